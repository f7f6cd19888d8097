"""The tiny model bundled with the package: small, loadable every documented way, runnable from the README.

These run the SHIPPED weights on the bundled real clip (`carphone`, held out from training), including the
coarse-to-fine property itself.
"""

import pytest
import torch
from transformers import AutoModel

from videoflextok_hf import VideoFlexTokModel, load_default_model, load_model
from videoflextok_hf.cli import main
from videoflextok_hf.data import read_video
from videoflextok_hf.default_model import default_model_path
from videoflextok_hf.evaluation import reconstruct
from videoflextok_hf.samples import SAMPLE_VIDEO


# the bundled model's recommended decoding settings (docs/default_model.md, "Decoding settings")
DECODING = dict(num_inference_steps=1, guidance="none", guidance_scale=1.0)
MIN_GAIN_DB = 1.5  # k = 1 -> N = 32 on carphone (first 17 frames); measured 1.76 (13.06 -> 14.82); previous model 1.31
MIN_PSNR_DB = 14.5  # at k = N on carphone (first 17 frames); measured 14.82 dB; the previous model 13.90 (k = 8)


@pytest.fixture(scope="module")
def model():
    return load_default_model()


@pytest.fixture(scope="module")
def clip(model):
    config = model.config
    return read_video(SAMPLE_VIDEO, fps=config.fps, size=config.image_size, frame_policy="trim",
                      chunk_size=config.chunk_size, overlap=config.overlap_size_frames)[None]


def test_weights_are_small_and_loaded_in_float32(model):
    weights = default_model_path() / "model.safetensors"
    assert weights.stat().st_size <= 20 * 1024 * 1024
    assert model.dtype == torch.float32 and not model.training
    by_alias = load_model("videoflextok-tiny")  # the name the CLI's --model takes
    assert by_alias.dtype == torch.float32
    # from_pretrained / AutoModel know no package aliases: it takes the folder (float16 on disk, so ask for float32)
    by_auto = AutoModel.from_pretrained(default_model_path(), dtype=torch.float32)
    assert isinstance(by_auto, VideoFlexTokModel) and by_auto.dtype == torch.float32
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, by_alias.state_dict()[name]), name
        assert torch.equal(tensor, by_auto.state_dict()[name]), name


def test_bundled_model_tokenizes_and_decodes_a_held_out_clip(model, clip):
    result = reconstruct(model, clip, [1, model.config.num_registers], seeds=[0], num_inference_steps=4)
    for k, videos in result.videos.items():
        size = model.config.image_size
        assert videos[0].shape == (1, clip.shape[2], 3, size, size) and torch.isfinite(videos[0]).all(), k
        assert 5.0 < result.psnr[k] < 60.0


def _spearman(values: list[float]) -> float:
    """Rank correlation of `values` with their order (1 = strictly rising); no ties among measured PSNRs."""
    n = len(values)
    ranks = [sorted(values).index(v) for v in values]
    return 1 - 6 * sum((rank - i) ** 2 for i, rank in enumerate(ranks)) / (n * (n * n - 1))


def test_bundled_model_is_coarse_to_fine_on_the_held_out_clip(model, clip):
    # the property the model exists to show, on a clip it never saw (full table over four held-out clips:
    # docs/default_model.md): PSNR, averaged over seeds, rises with the number of tokens per step k = 1, 2, 4, ... N,
    # and all N add 1.5 dB to the first one. (SSIM falls from k = 1 to 4 on carphone: a target this model misses.)
    # Decoded with the model's recommended settings (DECODING); the measured figures are in the comments.
    budgets = [2**i for i in range(model.config.num_registers.bit_length())]
    result = reconstruct(model, clip, budgets, seeds=[0, 1], **DECODING)
    psnrs = [result.psnr[k] for k in budgets]
    assert _spearman(psnrs) >= 0.9, psnrs
    assert psnrs[-1] - psnrs[0] >= MIN_GAIN_DB, psnrs
    assert psnrs[-1] >= MIN_PSNR_DB, psnrs


def test_readme_reconstruct_command_runs_on_the_bundled_clip(tmp_path, capsys):
    # the README's first command, with fewer steps
    video, grid = tmp_path / "reconstruction.mp4", tmp_path / "grid.png"
    assert main(["reconstruct", "--num-tokens", "1,8", "--steps", "4", "-o", str(video), "--grid", str(grid)]) == 0
    assert video.stat().st_size > 0 and grid.stat().st_size > 0
    assert "| 8 |" in capsys.readouterr().out
