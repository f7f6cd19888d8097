"""Hub releases, offline: remote code, pushes with a mocked HfApi, pulls from a hand-built cache, load errors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
import yaml
from conftest import REFERENCE_TINY
from helpers import randomize_, tiny_config
from huggingface_hub import HfApi, ModelCard
from safetensors.torch import load_file

from videoflextok_hf import VideoFlexTokModel, VideoFlexTokPipeline
from videoflextok_hf.conversion.convert_original import main as convert_main
from videoflextok_hf.hub import render_model_card, save_release

HERE = Path(__file__).resolve().parent
RELEASE_CODE = ["pipeline_videoflextok.py", "scheduling_flow_match.py", "guidance.py"]
MODELING_FILES = {
    "configuration_videoflextok.py", "modeling_videoflextok.py", "transformer.py", "fsq.py", "vidtok.py",
    "patchify.py", "chunking.py",
}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    model = randomize_(VideoFlexTokModel(tiny_config()), seed=3).eval()
    folder = tmp_path_factory.mktemp("saved")
    model.save_pretrained(folder)
    return folder


def _site_packages() -> str:
    import site

    return site.getsitepackages()[0]


def _run(args, env_extra=None, strip_package=False, script="load_and_run.py"):
    env = dict(os.environ)
    env.update(env_extra or {})
    command = [sys.executable]
    if strip_package:
        # no site processing: the editable-install hook of videoflextok_hf is not run, so the package is absent
        command.append("-S")
        env["PYTHONPATH"] = _site_packages()
    result = subprocess.run(command + [str(HERE / script)] + args, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def _hand_built_cache(cache: Path, repo_id: str, folder: Path, revisions: dict[str, str]) -> None:
    """`$HF_HUB_CACHE/models--org--name/{refs/<rev>, snapshots/<sha>/...}` as huggingface_hub lays it out."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    for revision, sha in revisions.items():
        shutil.copytree(folder, repo / "snapshots" / sha)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / revision).write_text(sha)


def test_three_load_paths_are_bit_identical(saved_model, tmp_path):
    assert MODELING_FILES <= set(os.listdir(saved_model))
    config = json.loads((saved_model / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_videoflextok.VideoFlexTokConfig",
        "AutoModel": "modeling_videoflextok.VideoFlexTokModel",
    }
    hf_home = {"HF_HOME": str(tmp_path / "hf_home")}
    # 1. installed package, local folder
    _run([str(saved_model), str(tmp_path / "package.safetensors")], hf_home)
    # 2. remote code in an interpreter where videoflextok_hf cannot be imported
    _run([str(saved_model), str(tmp_path / "remote.safetensors"), "--remote-code"], hf_home, strip_package=True)
    # 3. repo id resolved from a hand-built HF cache, offline
    cache = tmp_path / "hub_cache"
    _hand_built_cache(cache, "videoflextok/tiny-test", saved_model, {"main": "a" * 40})
    offline = dict(hf_home, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    _run(["videoflextok/tiny-test", str(tmp_path / "cache.safetensors")], offline)
    package, remote, cached = (load_file(str(tmp_path / f"{n}.safetensors")) for n in ("package", "remote", "cache"))
    assert package["module"].item() == 0 and remote["module"].item() == 1  # the remote path really ran Hub code
    for name in ("token_ids", "velocity"):
        assert torch.equal(package[name], remote[name]), name
        assert torch.equal(package[name], cached[name]), name


def test_revision_and_local_files_only_pass_through(saved_model, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(saved_model, other)
    weights = load_file(str(other / "model.safetensors"))
    weights["decoder.null_condition"] = weights["decoder.null_condition"] + 1.0  # a different "v2" release
    from safetensors.torch import save_file

    save_file(weights, str(other / "model.safetensors"), metadata={"format": "pt"})
    cache = tmp_path / "hub_cache"
    _hand_built_cache(cache, "videoflextok/tiny-test", saved_model, {"main": "a" * 40})
    _hand_built_cache(cache, "videoflextok/tiny-test", other, {"v2": "b" * 40})
    env = {"HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    _run(["videoflextok/tiny-test", str(tmp_path / "main.safetensors"), "--local-files-only"], env)
    _run(["videoflextok/tiny-test", str(tmp_path / "v2.safetensors"), "--revision", "v2"], env)
    main, v2 = load_file(str(tmp_path / "main.safetensors")), load_file(str(tmp_path / "v2.safetensors"))
    assert torch.equal(main["token_ids"], v2["token_ids"])  # the encoder is the same in both revisions
    # the null condition changed: only the unconditional sample's velocity differs
    assert torch.equal(main["velocity"][0], v2["velocity"][0])
    assert not torch.equal(main["velocity"][1], v2["velocity"][1])


def test_convert_and_push_release_with_mocked_hub(tmp_path):
    calls = {}

    def upload_folder(self, *, folder_path, repo_id, repo_type, revision, commit_message, **kwargs):
        calls["files"] = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file())
        calls["card"] = (Path(folder_path) / "README.md").read_text()
        calls["upload"] = dict(repo_id=repo_id, repo_type=repo_type, revision=revision)
        return mock.Mock(commit_url=f"https://huggingface.co/{repo_id}/commit/123")

    with mock.patch.object(HfApi, "create_repo") as create_repo, \
            mock.patch.object(HfApi, "create_branch") as create_branch, \
            mock.patch.object(HfApi, "upload_folder", autospec=True, side_effect=upload_folder) as upload:
        code = convert_main(["--src", str(REFERENCE_TINY / "official"), "--dst", str(tmp_path / "release"),
                             "--push-to-hub", "someone/videoflextok-tiny", "--private", "--revision", "v1"])
    assert code == 0
    create_repo.assert_called_once_with("someone/videoflextok-tiny", repo_type="model", private=True, exist_ok=True)
    create_branch.assert_called_once_with("someone/videoflextok-tiny", branch="v1", repo_type="model", exist_ok=True)
    assert upload.call_count == 1  # one commit
    assert calls["upload"] == {"repo_id": "someone/videoflextok-tiny", "repo_type": "model", "revision": "v1"}
    assert calls["files"] == sorted(
        ["README.md", "config.json", "model.safetensors", "model_index.json", *RELEASE_CODE,
         "scheduler/scheduler_config.json", "scheduler/scheduling_flow_match.py", "model/videoflextok_model.py",
         *MODELING_FILES, *(f"model/{name}" for name in MODELING_FILES)]
    )
    card = calls["card"]
    assert card.startswith("---\n")
    metadata = yaml.safe_load(card.split("---\n")[1])
    assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == "video-to-video"
    # a converted official-format checkpoint under license "other": the official licence, named and linked
    assert metadata["license"] == "other" and metadata["license_name"] == "videoflextok-sample-code-license"
    assert metadata["license_link"].startswith("https://")
    assert "VidTok v1 causal KL VAE" in card  # the reference checkpoint's compressor
    assert "30\nsteps, `apg` guidance, scale 20" in card  # the official decoding settings travel with the release
    assert {"video-tokenizer", "fsq", "rectified-flow"} <= set(metadata["tags"])
    assert "{{" not in card and "}}" not in card
    for figure in ("523.4k", "32 x 32", "64,000", "[8, 8, 8, 5, 5, 5]", "N = 8 tokens", "t = 5 + 4K",
                   "T = 17 + 16K", str(REFERENCE_TINY / "official"), "2604.12887"):
        assert figure in card, figure
    # and the release folder loads back as a pipeline (model at the root, scheduler in scheduler/)
    pipe = VideoFlexTokPipeline.from_pretrained(tmp_path / "release")
    assert pipe.scheduler.config.num_train_timesteps == 1000


def test_model_card_renders_from_config():
    model = VideoFlexTokModel(tiny_config())
    card = render_model_card(model, "org/name", license="apache-2.0")
    assert card.data.license == "apache-2.0" and card.data.library_name == "transformers"
    assert card.data.license_name is None
    reloaded = ModelCard(str(card))
    assert reloaded.data.tags == card.data.tags
    assert f"{sum(p.numel() for p in model.parameters()) / 1e3:.1f}k" in str(card)


@pytest.mark.parametrize(
    "damage,message",
    [
        ("missing", "no file named model.safetensors"),
        ("truncated", "model.safetensors could not be read.*truncated or corrupt.*force_download"),
        ("other_model", "config.json: .*'bert' model, not 'videoflextok'"),
        ("official", "config.json: .*official VideoFlexTok checkpoint config.*videoflextok-convert"),
    ],
)
def test_load_errors_name_the_file_and_the_fix(saved_model, tmp_path, damage, message):
    folder = tmp_path / "damaged"
    shutil.copytree(saved_model, folder)
    if damage == "missing":
        (folder / "model.safetensors").unlink()
    elif damage == "truncated":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "other_model":
        (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    else:
        shutil.copy(REFERENCE_TINY / "official" / "config.json", folder / "config.json")
    with pytest.raises((OSError, ValueError), match=message):
        VideoFlexTokModel.from_pretrained(folder)


@pytest.mark.parametrize("compressor,expected", [
    ("vidtok", "VidTok v1 causal KL VAE, frozen (4x time, 8x8 space, 16 latent channels, width 4)"),
    ("dct", "parameter-free causal 3-D DCT compressor, no learned VAE (4x time, 8x8 space, 48 latent channels: the 16"),
    ("patchify", "parameter-free causal space-to-depth compressor, no learned VAE (4x time, 8x8 space, 768 latent"),
])
def test_the_card_describes_the_compressor_the_model_has(compressor, expected):
    channels = {"vidtok": 16, "dct": 48, "patchify": 768}[compressor]
    model = VideoFlexTokModel(tiny_config(compressor=compressor, vae_latent_channels=channels))
    card = str(render_model_card(model, "org/name", license="apache-2.0"))
    assert expected in card
    others = {"vidtok": "VidTok", "dct": "DCT", "patchify": "space-to-depth"}
    assert all(others[name] not in card.split("| VAE |")[1].split("\n")[0] for name in others if name != compressor)


def test_license_other_needs_a_name_and_a_link():
    model = VideoFlexTokModel(tiny_config())
    with pytest.raises(ValueError, match="license_name and license_link"):
        render_model_card(model, "org/name", license="other", license_name="mine")
    card = render_model_card(model, "org/name", license="other", license_name="mine", license_link="LICENSE")
    assert (card.data.license_name, card.data.license_link) == ("mine", "LICENSE")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    model = randomize_(VideoFlexTokModel(tiny_config()), seed=5).eval()
    model.config.decoding_defaults["num_inference_steps"] = 7  # a model's own settings travel with its release
    folder = tmp_path_factory.mktemp("release") / "videoflextok-test"
    save_release(model, folder, repo_id="videoflextok/release-test", license="apache-2.0")
    return folder


def test_a_release_decodes_with_diffusers_remote_code_and_without_the_package(release, tmp_path):
    index = json.loads((release / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_videoflextok", "VideoFlexTokPipeline"]
    hf_home = {"HF_HOME": str(tmp_path / "hf_home")}
    # 1. the package's own pipeline class (no remote code)
    _run([str(release), str(tmp_path / "package.safetensors"), "--package"], hf_home, script="decode_with_diffusers.py")
    # 2. DiffusionPipeline + trust_remote_code where videoflextok_hf cannot be imported: a local folder ...
    _run([str(release), str(tmp_path / "remote.safetensors")], hf_home, strip_package=True,
         script="decode_with_diffusers.py")
    # 3. ... and a repo id resolved from a hand-built HF cache, offline
    cache = tmp_path / "hub_cache"
    _hand_built_cache(cache, "videoflextok/release-test", release, {"main": "c" * 40})
    offline = dict(hf_home, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    _run(["videoflextok/release-test", str(tmp_path / "cached.safetensors")], offline, strip_package=True,
         script="decode_with_diffusers.py")
    package, remote, cached = (load_file(str(tmp_path / f"{n}.safetensors")) for n in ("package", "remote", "cached"))
    assert package["remote"].item() == 0 and remote["remote"].item() == 1 and cached["remote"].item() == 1
    assert package["default_steps"].item() == remote["default_steps"].item() == 7
    assert package["frames"].shape == (2, 33, 3, 32, 32)
    assert torch.equal(package["frames"], remote["frames"]) and torch.equal(package["frames"], cached["frames"])
    # and the transformers front door of the same folder still works without the package
    _run([str(release), str(tmp_path / "auto.safetensors"), "--remote-code"], hf_home, strip_package=True)


def test_the_remote_code_files_are_self_contained():
    """What a release ships as code imports only its own siblings and third-party libraries, never this package."""
    root = HERE.parent / "src" / "videoflextok_hf"
    files = [root / "pipeline" / name for name in RELEASE_CODE] + [root / "modeling" / n for n in MODELING_FILES]
    files.append(root / "hub_files" / "videoflextok_model.py")
    for path in files:
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                assert not stripped.startswith(("from ..", "import videoflextok_hf", "from videoflextok_hf")), (path, line)


def test_a_release_loader_missing_a_modeling_module_is_refused_before_anything_is_written(tmp_path):
    import videoflextok_hf.hub as hub

    loader = tmp_path / "videoflextok_model.py"
    loader.write_text(hub.RELEASE_MODEL_LOADER.read_text().replace("from .chunking import ChunkGeometry", ""))
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "README.md").write_text("old")
    model = VideoFlexTokModel(tiny_config())
    with mock.patch.object(hub, "RELEASE_MODEL_LOADER", loader), pytest.raises(RuntimeError, match="chunking"):
        save_release(model, folder, repo_id="org/name", license="apache-2.0")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md"] and not list(tmp_path.glob(".tmp-*"))
