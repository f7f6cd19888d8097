"""The `videoflextok` command line, end to end on a tiny model and a real clip."""

import PIL.Image
import pytest
import torch
from conftest import SHARED_DATA
from helpers import convert_reference, randomize_, tiny_config
from safetensors import safe_open

from videoflextok_hf import VideoFlexTokModel
from videoflextok_hf.cli import main
from videoflextok_hf.data import read_video

CLIP = str(SHARED_DATA / "orig_clip.mp4")  # a real 17-frame clip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    config = tiny_config(compressor="patchify", vae_latent_channels=768, image_size=32)
    folder = tmp_path_factory.mktemp("model")
    randomize_(VideoFlexTokModel(config), seed=1).save_pretrained(folder)
    return str(folder)


def test_tokenize_then_detokenize(model_dir, tmp_path):
    tokens = tmp_path / "tokens.safetensors"
    assert main(["tokenize", CLIP, "-o", str(tokens), "--model", model_dir]) == 0
    with safe_open(str(tokens), framework="pt") as handle:
        token_ids = handle.get_tensor("token_ids")
        metadata = handle.metadata()
    assert token_ids.shape == (1, 5, 8) and token_ids.dtype == torch.long
    assert metadata["num_frames"] == "17" and metadata["model"] == model_dir
    video = tmp_path / "out.mp4"
    assert main(["detokenize", str(tokens), "-o", str(video), "--model", model_dir, "--num-tokens", "4",
                 "--steps", "2"]) == 0
    decoded = read_video(video, fps=None, size=32)
    assert decoded.shape == (3, 17, 32, 32)


def test_reconstruct_writes_video_and_grid(model_dir, tmp_path, capsys):
    video, grid = tmp_path / "side.mp4", tmp_path / "grid.png"
    assert main(["reconstruct", CLIP, "--num-tokens", "1,8", "-o", str(video), "--grid", str(grid),
                 "--model", model_dir, "--steps", "2"]) == 0
    side = read_video(video, fps=None, size=32)  # short side 32: the 96-wide frame is center-cropped
    assert side.shape[1] == 17
    image = PIL.Image.open(grid)
    assert image.size == (3 * 64, 14 + 5 * 64)  # input + 2 budgets, 5 frames, 2x scale, a label row
    out = capsys.readouterr().out
    assert "| 1 |" in out and "| 8 |" in out


def test_eval_prints_a_table(model_dir, tmp_path, capsys):
    report = tmp_path / "eval.json"
    assert main(["eval", CLIP, "--num-tokens", "1,2,8", "--seeds", "0,1", "--model", model_dir, "--steps", "2",
                 "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "| k (tokens per step) | PSNR (dB) | SSIM |" in out
    assert report.read_text().count("psnr") == 3


def test_bad_input_gives_a_clean_error(model_dir, tmp_path, capsys):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert main(["tokenize", str(empty), "-o", str(tmp_path / "t.safetensors"), "--model", model_dir]) == 2
    assert "empty (0 bytes)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reconstruct", CLIP, "--num-tokens", "a,b", "-o", "x.mp4"])


def test_vae_dtype_runs_the_vidtok_vae_in_bfloat16(tmp_path, monkeypatch):
    monkeypatch.setattr("videoflextok_hf.cli._cpu_lacks_units_for", lambda dtype: None)  # run on any CPU
    converted = convert_reference(tmp_path / "converted")  # the official tiny checkpoint: a real VidTok VAE
    tokens = {}
    for vae_dtype in ("float32", "bfloat16"):
        path = tmp_path / f"tokens_{vae_dtype}.safetensors"
        assert main(["tokenize", CLIP, "-o", str(path), "--model", str(converted), "--vae-dtype", vae_dtype]) == 0
        with safe_open(str(path), framework="pt") as handle:
            tokens[vae_dtype] = handle.get_tensor("token_ids")
    assert tokens["bfloat16"].shape == tokens["float32"].shape
    # bf16 VAE latents differ by about 1%: most FSQ ids stay the same
    assert (tokens["bfloat16"] == tokens["float32"]).float().mean() >= 0.8
    video = tmp_path / "out.mp4"
    assert main(["detokenize", str(tmp_path / "tokens_bfloat16.safetensors"), "-o", str(video), "--model",
                 str(converted), "--steps", "2", "--vae-dtype", "bfloat16"]) == 0
    assert read_video(video, fps=None, size=32).shape == (3, 17, 32, 32)


def test_half_precision_is_refused_on_cpus_without_its_units(model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("videoflextok_hf.cli._cpu_lacks_units_for",
                        lambda dtype: "this CPU has no bfloat16 units" if dtype == torch.bfloat16 else None)
    for flag in ("--vae-dtype", "--dtype"):
        assert main(["tokenize", CLIP, "-o", str(tmp_path / "t.safetensors"), "--model", model_dir,
                     flag, "bfloat16"]) == 2
        assert f"{flag} bfloat16: this CPU has no bfloat16 units" in capsys.readouterr().err


def test_vae_dtype_is_refused_for_parameter_free_compressors(model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("videoflextok_hf.cli._cpu_lacks_units_for", lambda dtype: None)
    assert main(["tokenize", CLIP, "-o", str(tmp_path / "t.safetensors"), "--model", model_dir,
                 "--vae-dtype", "bfloat16"]) == 2
    assert "--vae-dtype applies to models with the VidTok VAE" in capsys.readouterr().err


def test_decoding_commands_default_to_the_model_settings(tmp_path, capsys):
    config = tiny_config(compressor="patchify", vae_latent_channels=768, image_size=32,
                         decoding_defaults={"num_inference_steps": 2, "guidance": "cfg", "guidance_scale": 1.5})
    folder = tmp_path / "model"
    randomize_(VideoFlexTokModel(config), seed=1).save_pretrained(folder)
    assert main(["eval", CLIP, "--model", str(folder), "--num-tokens", "8"]) == 0
    assert "2 steps, cfg 1.5" in capsys.readouterr().out
    assert main(["eval", CLIP, "--model", str(folder), "--num-tokens", "8", "--steps", "1", "--guidance", "none"]) == 0
    assert "1 steps, none 1.5" in capsys.readouterr().out
