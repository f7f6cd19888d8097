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
from videoflextok_hf.hub import render_model_card

HERE = Path(__file__).resolve().parent
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


def _run(args, env_extra=None, strip_package=False):
    env = dict(os.environ)
    env.update(env_extra or {})
    command = [sys.executable]
    if strip_package:
        # no site processing: the editable-install hook of videoflextok_hf is not run, so the package is absent
        command.append("-S")
        env["PYTHONPATH"] = _site_packages()
    result = subprocess.run(command + [str(HERE / "load_and_run.py")] + args, env=env, capture_output=True, text=True,
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
        ["README.md", "config.json", "model.safetensors", "scheduler/scheduler_config.json", *MODELING_FILES]
    )
    card = calls["card"]
    assert card.startswith("---\n")
    metadata = yaml.safe_load(card.split("---\n")[1])
    assert metadata["library_name"] == "videoflextok_hf"
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
    assert card.data.license == "apache-2.0" and card.data.library_name == "videoflextok_hf"
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
