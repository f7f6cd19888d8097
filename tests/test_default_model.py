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
    assert weights.stat().st_size <= 10 * 1024 * 1024
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


def test_bundled_model_is_coarse_to_fine_on_the_held_out_clip(model, clip):
    # the property the model exists to show (full table over four held-out clips: docs/default_model.md): PSNR,
    # averaged over seeds, rises with the number of tokens per step, and all 8 clearly beat the first one.
    # Fewer sampling steps than the CLI's 25 keep this fast; the measured gains here are about +0.9, +0.3, +0.1 dB
    budgets = [1, 2, 4, 8]
    result = reconstruct(model, clip, budgets, seeds=[0, 1], num_inference_steps=12)
    psnrs = [result.psnr[k] for k in budgets]
    assert psnrs[1] > psnrs[0] and psnrs[2] > psnrs[1] and psnrs[3] > psnrs[1], psnrs
    assert psnrs[3] - psnrs[0] >= 0.75, psnrs


def test_readme_reconstruct_command_runs_on_the_bundled_clip(tmp_path, capsys):
    # the README's first command, with fewer steps
    video, grid = tmp_path / "reconstruction.mp4", tmp_path / "grid.png"
    assert main(["reconstruct", "--num-tokens", "1,8", "--steps", "4", "-o", str(video), "--grid", str(grid)]) == 0
    assert video.stat().st_size > 0 and grid.stat().st_size > 0
    assert "| 8 |" in capsys.readouterr().out
