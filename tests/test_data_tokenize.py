"""Token datasets: tokenization (killed and resumed, several processes), errors, push / load (offline), detokenize."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import av
import datasets
import numpy as np
import pytest
import torch
import yaml
from helpers import randomize_, tiny_config
from huggingface_hub import HfApi, constants
from huggingface_hub.utils import filter_repo_objects

from videoflextok_hf import VideoFlexTokModel
from videoflextok_hf.data import (
    VideoDecodeError,
    decode_clip,
    detokenize_rows,
    load_token_dataset,
    load_video_dataset,
    push_token_dataset,
    tokenize_dataset,
    write_video,
)

NUM_CLIPS, SHARD_SIZE, NUM_SHARDS = 24, 3, 8
CAPTIONS = {"a.mp4": "rising", "b.mp4": "falling", "c.mp4": "steps", "d.mp4": "noise"}

WORKER = textwrap.dedent("""
    import sys, time
    import datasets
    from videoflextok_hf import VideoFlexTokModel
    from videoflextok_hf.data import tokenize_dataset

    model_dir, clips_dir, output_dir, rank, world, delay = sys.argv[1:7]
    model = VideoFlexTokModel.from_pretrained(model_dir)
    if float(delay) > 0:  # slow each batch down so that the test can kill the process midway
        encode = model.encode

        def slow_encode(*args, **kwargs):
            time.sleep(float(delay))
            return encode(*args, **kwargs)

        model.encode = slow_encode
    clips = datasets.load_from_disk(clips_dir)
    explicit = int(world) > 0  # else: the process layout comes from accelerate (one process here)
    tokenize_dataset(clips, model, output_dir, shard_size=3, batch_size=2, progress=False,
                     process_index=int(rank) if explicit else None, num_processes=int(world) if explicit else None)
    print("finished")
""")


def _video(path: Path, kind: str, frames: int = 64, fps: int = 16) -> Path:
    """Small 48x40 test videos (not square, so that they are resized and center-cropped)."""
    t = torch.arange(frames, dtype=torch.float32)[:, None, None]
    y = torch.linspace(0, 1, 40)[None, :, None]
    x = torch.linspace(0, 1, 48)[None, None, :]
    if kind == "rising":
        grey = (t / frames + 0.5 * x) % 1.0 + 0 * y
    elif kind == "falling":
        grey = (1 - t / frames) * y + 0 * x
    elif kind == "steps":
        grey = ((t // 8) / 8 + 0.3 * (x > 0.5) + 0 * y) % 1.0
    else:
        grey = torch.rand(frames, 40, 48, generator=torch.Generator().manual_seed(1))
    video = torch.stack([grey, grey.flip(-1), 1 - grey]) * 2 - 1
    return write_video(path, video, fps=fps)


@pytest.fixture(scope="module", autouse=True)
def _private_caches(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf_datasets_cache"))
        yield


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Videos with captions, their clip list (saved for subprocesses), and a tiny random model (saved)."""
    root = tmp_path_factory.mktemp("tokenize")
    videos = root / "videos"
    videos.mkdir()
    for name, caption in CAPTIONS.items():
        _video(videos / name, caption)
    (videos / "metadata.jsonl").write_text("".join(
        json.dumps({"file_name": name, "caption": caption}) + "\n" for name, caption in CAPTIONS.items()))
    clips = load_video_dataset(videos, clip_frames=17, stride=3, fps=8)  # 32 frames at 8 fps -> 6 clips per video
    assert len(clips) == NUM_CLIPS
    clips.save_to_disk(str(root / "clips"))
    model = randomize_(VideoFlexTokModel(tiny_config(compressor="dct", vae_latent_channels=48, image_size=32)), seed=3)
    model.save_pretrained(root / "model")
    model = VideoFlexTokModel.from_pretrained(root / "model").eval()
    return SimpleNamespace(root=root, videos=videos, clips=clips, model=model)


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    """An uninterrupted single-process run."""
    out = tmp_path_factory.mktemp("reference") / "tokens"
    tokens = tokenize_dataset(inputs.clips, inputs.model, out, shard_size=SHARD_SIZE, batch_size=2, progress=False)
    return SimpleNamespace(dir=out, tokens=tokens, rows=_rows(tokens))


def _rows(dataset) -> list[tuple]:
    """Every row in order, with its token ids, as plain Python values."""
    return [(r["video_id"], int(r["clip_index"]), float(r["clip_start"]), r["caption"], r["token_ids"].tolist())
            for r in dataset]


def _env(tmp_path: Path) -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_CACHE=str(tmp_path / "worker_cache"))


def _worker(inputs, output_dir: Path, tmp_path: Path, rank=0, world=0, delay=0.0, log=None):
    command = [sys.executable, "-c", WORKER, str(inputs.root / "model"), str(inputs.root / "clips"), str(output_dir),
               str(rank), str(world), str(delay)]
    log = open(log or tmp_path / f"worker-{rank}-{world}.log", "w")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_env(tmp_path)), log


# ---------------------------------------------------------------------------------------------------------------
# tokenization


def test_token_dataset_contents(inputs, reference):
    tokens, model = reference.tokens, inputs.model
    assert len(tokens) == NUM_CLIPS
    assert tokens.column_names == ["video_id", "clip_index", "clip_start", "fps", "num_frames", "tokens_per_step",
                                   "token_ids", "caption"]
    assert tokens.features["token_ids"].feature.feature.dtype == "uint16"  # the 64000-id codebook fits
    row = tokens[7]
    assert row["token_ids"].shape == (5, 8) and row["token_ids"].dtype == torch.int64  # t = 1 + 4K for 17 frames
    assert (row["video_id"], int(row["clip_index"]), float(row["clip_start"]), row["caption"]) == \
        ("b.mp4", 1, 0.375, "falling")
    assert int(row["num_frames"]) == 17 and int(row["tokens_per_step"]) == 8 and float(row["fps"]) == 8.0
    # rows follow the clip order and hold the model's deterministic encoding of exactly those clips
    assert [(r[0], r[1]) for r in reference.rows] == list(zip(inputs.clips["video_id"], inputs.clips["clip_index"]))
    for index in (0, 7, 23):
        clip = inputs.clips[index]
        with torch.inference_mode():
            expected = model.encode(decode_clip(clip, 32)[None], sample_posterior=False).token_ids[0]
        assert torch.equal(tokens[index]["token_ids"], expected)
    assert len({tuple(map(tuple, r[4])) for r in reference.rows}) == NUM_CLIPS  # not degenerate
    manifest = json.loads((reference.dir / "tokenizer.json").read_text())
    assert json.loads(tokens.info.description) == manifest
    expected_manifest = {
        "tokenizer": str(inputs.root / "model"), "image_size": 32, "fps": 8.0, "clip_frames": 17, "clip_stride": 3,
        "time_steps": 5, "tokens_per_step": 8, "registers_per_step": 8, "codebook_size": 64000, "token_dtype": "uint16",
        "num_clips": NUM_CLIPS, "num_shards": NUM_SHARDS, "num_rows": NUM_CLIPS, "num_skipped": 0,
        "data_files": [f"data/train-{s:05d}-of-{NUM_SHARDS:05d}.parquet" for s in range(NUM_SHARDS)],
    }
    assert {k: manifest[k] for k in expected_manifest} == expected_manifest
    assert "posterior mean" in manifest["encoding"]
    assert (reference.dir / "README.md").exists() and not (reference.dir / "errors.jsonl").exists()


def test_rerun_is_a_no_op_and_settings_are_checked(inputs, reference, tmp_path):
    out = tmp_path / "tokens"
    shutil.copytree(reference.dir, out)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "data").iterdir()}
    again = tokenize_dataset(inputs.clips, inputs.model, out, shard_size=SHARD_SIZE, batch_size=2, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (out / "data").iterdir()} == stamps
    assert _rows(again) == reference.rows
    with pytest.raises(ValueError, match="different settings \\(tokens_per_step\\)"):
        tokenize_dataset(inputs.clips, inputs.model, out, num_tokens=4, shard_size=SHARD_SIZE, progress=False)
    with pytest.raises(ValueError, match="different settings \\(clips_sha256, num_clips, num_shards\\)"):
        tokenize_dataset(inputs.clips.select(range(5)), inputs.model, out, shard_size=SHARD_SIZE, progress=False)


def test_fewer_tokens_per_step_are_the_coarse_prefix(inputs, reference, tmp_path):
    model = inputs.model
    model.train()
    subset = inputs.clips.select(range(4))
    tokens = tokenize_dataset(subset, model, tmp_path / "k3", num_tokens=3, shard_size=2, batch_size=3, progress=False,
                              num_workers=2)
    assert model.training  # the caller's mode is restored
    model.eval()
    assert [r["token_ids"].shape for r in tokens] == [(5, 3)] * 4
    assert [r[4] for r in _rows(tokens)] == [[step[:3] for step in r[4]] for r in reference.rows[:4]]
    with pytest.raises(ValueError, match="num_tokens must lie in 1..8"):
        tokenize_dataset(subset, model, tmp_path / "k9", num_tokens=9, progress=False)


def test_killed_run_resumes_without_loss_or_duplicates(inputs, reference, tmp_path):
    out = tmp_path / "tokens"
    process, log = _worker(inputs, out, tmp_path, delay=0.4)
    deadline = time.time() + 240
    while len(list((out / "shards").glob("*.json"))) < 2:
        assert process.poll() is None, (tmp_path / "worker-0-0.log").read_text()[-3000:]
        assert time.time() < deadline, "the worker made no progress"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)  # kill -9, midway
    process.wait()
    log.close()
    assert process.returncode == -signal.SIGKILL
    finished = sorted((out / "shards").glob("*.json"))
    assert 2 <= len(finished) < NUM_SHARDS, "the kill must land midway"
    before = {p: p.stat().st_mtime_ns for p in (out / "data").glob("*.parquet")}
    with pytest.raises(ValueError, match=f"not finished \\({len(finished)} of {NUM_SHARDS} shards\\)"):
        load_token_dataset(out)
    # resume (here in this process, with the same model files and arguments)
    resumed = tokenize_dataset(inputs.clips, inputs.model, out, shard_size=SHARD_SIZE, batch_size=2, progress=False)
    assert _rows(resumed) == reference.rows  # identical token ids, same order, every clip once
    keys = [(r[0], r[1]) for r in _rows(resumed)]
    assert len(keys) == len(set(keys)) == NUM_CLIPS
    finished_files = {out / "data" / (p.stem + ".parquet") for p in finished}
    assert {p: p.stat().st_mtime_ns for p in finished_files} == {p: before[p] for p in finished_files}  # not redone
    assert not [p for p in out.rglob(".tmp-*")]
    assert _rows(load_token_dataset(out)) == reference.rows


def test_two_processes_write_the_single_process_result(inputs, reference, tmp_path):
    out = tmp_path / "tokens"
    workers = [_worker(inputs, out, tmp_path, rank=rank, world=2) for rank in (0, 1)]
    for rank, (process, log) in enumerate(workers):
        assert process.wait(timeout=300) == 0, (tmp_path / f"worker-{rank}-2.log").read_text()[-3000:]
        log.close()
    assert _rows(load_token_dataset(out)) == reference.rows
    for shard in range(NUM_SHARDS):  # shard files are byte-identical to the single-process ones
        name = f"data/train-{shard:05d}-of-{NUM_SHARDS:05d}.parquet"
        assert (out / name).read_bytes() == (reference.dir / name).read_bytes()


def test_a_process_returns_its_own_shards_until_all_are_done(inputs, reference, tmp_path):
    out = tmp_path / "tokens"
    mine = tokenize_dataset(inputs.clips, inputs.model, out, shard_size=SHARD_SIZE, batch_size=2, process_index=1,
                            num_processes=2, progress=False)
    odd = [row for i, row in enumerate(reference.rows) if (i // SHARD_SIZE) % 2 == 1]
    assert _rows(mine) == odd
    assert sorted(p.name for p in (out / "data").iterdir()) == \
        [f"train-{s:05d}-of-{NUM_SHARDS:05d}.parquet" for s in range(1, NUM_SHARDS, 2)]
    with pytest.raises(ValueError, match="not finished \\(4 of 8 shards\\)"):
        load_token_dataset(out)
    with pytest.raises(ValueError, match="process_index"):
        tokenize_dataset(inputs.clips, inputs.model, out, shard_size=SHARD_SIZE, process_index=2, num_processes=2)
    both = tokenize_dataset(inputs.clips, inputs.model, out, shard_size=SHARD_SIZE, batch_size=2, process_index=0,
                            num_processes=2, progress=False)
    assert _rows(both) == reference.rows


def _audio_only(path: Path) -> None:
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_unreadable_clips_raise_or_are_skipped_and_reported(inputs, reference, tmp_path, caplog):
    videos = tmp_path / "videos"
    shutil.copytree(inputs.videos, videos)
    clips = load_video_dataset(videos, clip_frames=17, stride=3, fps=8)
    # the files break after the clips were listed: truncated, deleted, replaced by audio only
    data = (videos / "a.mp4").read_bytes()
    (videos / "a.mp4").write_bytes(data[: len(data) // 2])
    (videos / "c.mp4").unlink()
    _audio_only(videos / "d.mp4")
    with pytest.raises(VideoDecodeError, match=f"{videos / 'a.mp4'}: not a readable video"):
        tokenize_dataset(clips, inputs.model, tmp_path / "strict", shard_size=SHARD_SIZE, progress=False)
    with caplog.at_level(logging.WARNING, logger="videoflextok_hf.data.datasets"):
        tokens = tokenize_dataset(clips, inputs.model, tmp_path / "lenient", shard_size=SHARD_SIZE, batch_size=2,
                                  skip_errors=True, progress=False)
    assert _rows(tokens) == [r for r in reference.rows if r[0] == "b.mp4"]
    errors = [json.loads(line) for line in (tmp_path / "lenient" / "errors.jsonl").read_text().splitlines()]
    assert sorted((e["video_id"], e["clip_index"]) for e in errors) == sorted(
        (video, clip) for video in ("a.mp4", "c.mp4", "d.mp4") for clip in range(6))
    reasons = {e["video_id"]: e["error"] for e in errors}
    assert reasons["a.mp4"].startswith(f"{videos / 'a.mp4'}: not a readable video")
    assert reasons["c.mp4"] == f"{videos / 'c.mp4'}: no such video file."
    assert reasons["d.mp4"].startswith(f"{videos / 'd.mp4'}: the file has no video stream")
    assert len(tokens) + len(errors) == len(clips)  # no silent gap
    assert any("18 clip(s) could not be decoded" in r.getMessage() and "errors.jsonl" in r.getMessage()
               for r in caplog.records)
    manifest = json.loads((tmp_path / "lenient" / "tokenizer.json").read_text())
    assert (manifest["num_rows"], manifest["num_skipped"]) == (6, 18)
    assert manifest["data_files"] == ["data/train-00002-of-00008.parquet", "data/train-00003-of-00008.parquet"]
    assert "| left out | 18 clip(s)" in (tmp_path / "lenient" / "README.md").read_text()
    # every clip unreadable: an empty dataset with the right columns, and nothing to push
    broken = clips.filter(lambda row: row["video_id"] != "b.mp4").select(range(4))
    empty = tokenize_dataset(broken, inputs.model, tmp_path / "none", shard_size=2, skip_errors=True, progress=False)
    assert len(empty) == 0 and empty.column_names == tokens.column_names
    assert len(load_token_dataset(tmp_path / "none")) == 0
    assert len((tmp_path / "none" / "errors.jsonl").read_text().splitlines()) == 4
    with pytest.raises(ValueError, match="no rows to push"):
        push_token_dataset(tmp_path / "none", "someone/empty")
    with pytest.raises(FileNotFoundError, match="no such token dataset folder"):
        load_token_dataset(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------------------------
# Hub


def test_push_and_load_back_from_a_folder_and_an_offline_hub_cache(inputs, reference, tmp_path, monkeypatch):
    folder = tmp_path / "tokens"
    shutil.copytree(reference.dir, folder)
    uploads = []

    def upload_folder(self, **kwargs):
        uploads.append(kwargs)
        return SimpleNamespace(commit_url="https://huggingface.co/datasets/someone/tokens/commit/abc")

    with mock.patch.object(HfApi, "create_repo") as create_repo, \
            mock.patch.object(HfApi, "upload_folder", autospec=True, side_effect=upload_folder):
        url = push_token_dataset(folder, "someone/tokens", private=True, token="hf_test")
    assert url == "https://huggingface.co/datasets/someone/tokens/commit/abc"
    create_repo.assert_called_once_with("someone/tokens", repo_type="dataset", private=True, exist_ok=True)
    (upload,) = uploads
    assert (upload["folder_path"], upload["repo_id"], upload["repo_type"], upload["revision"]) == \
        (str(folder), "someone/tokens", "dataset", None)
    assert upload["delete_patterns"] == ["data/*.parquet"]  # no stale shards of an earlier push survive
    local = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    sent = sorted(filter_repo_objects(local, allow_patterns=upload["allow_patterns"]))
    assert sent == ["README.md"] + [f"data/train-{s:05d}-of-00008.parquet" for s in range(NUM_SHARDS)] + \
        ["tokenizer.json"]
    # the card: YAML header and the real figures
    card = (folder / "README.md").read_text()
    _, header, body = card.split("---\n", 2)
    meta = yaml.safe_load(header)
    assert meta["license"] == "other" and meta["task_categories"] == ["text-to-video"]  # captions present
    assert {"videoflextok", "video-tokens"} <= set(meta["tags"]) and meta["size_categories"] == ["n<1K"]
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}]
    for figure in ("# tokens", "24 video clips", f"`{inputs.root / 'model'}`", "17 frames at 8 fps",
                   "32x32 pixels", "clip stride 3 frames", "t = 5 time steps, k = 8 tokens per step (of 8)",
                   "64000 ids", "stored as uint16", "posterior mean", "`caption`",
                   'load_token_dataset("someone/tokens")'):
        assert figure in body, figure
    # back from the folder, with our loader and with datasets alone (the card's `configs` header)
    assert _rows(load_token_dataset(folder)) == reference.rows
    plain = datasets.load_dataset(str(folder), split="train").with_format("torch")
    assert _rows(plain) == reference.rows and plain.features == reference.tokens.features
    # ... and from a hand-built Hub cache, offline
    cache = tmp_path / "hub_cache"
    repo = cache / "datasets--someone--tokens"
    sha = hashlib.sha1(b"commit").hexdigest()
    for name in sent:
        data = (folder / name).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / sha / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    from_hub = load_token_dataset("someone/tokens")
    assert _rows(from_hub) == reference.rows
    assert json.loads(from_hub.info.description)["tokenizer"] == str(inputs.root / "model")
    assert _rows(load_token_dataset("someone/tokens", revision=sha)) == reference.rows
    # a snapshot with a shard missing is refused
    (repo / "snapshots" / sha / "data" / "train-00004-of-00008.parquet").unlink()
    with pytest.raises(ValueError, match="missing: \\['data/train-00004-of-00008.parquet'\\]"):
        load_token_dataset("someone/tokens")


def test_push_refuses_unfinished_datasets(inputs, tmp_path):
    out = tmp_path / "tokens"
    tokenize_dataset(inputs.clips.select(range(6)), inputs.model, out, shard_size=3, process_index=0,
                     num_processes=2, progress=False)
    with mock.patch.object(HfApi, "create_repo") as create_repo, mock.patch.object(HfApi, "upload_folder") as upload:
        with pytest.raises(ValueError, match="not finished"):
            push_token_dataset(out, "someone/tokens")
    create_repo.assert_not_called()
    upload.assert_not_called()


# ---------------------------------------------------------------------------------------------------------------
# inspection


def test_detokenize_rows_with_the_model(inputs, reference):
    rows = reference.tokens.select([3, 11])
    videos = detokenize_rows(rows, inputs.model, num_tokens=4, num_inference_steps=1,
                             generator=torch.Generator().manual_seed(0))
    assert videos.shape == (2, 17, 3, 32, 32) and videos.min() >= 0 and videos.max() <= 1
    ids = torch.stack([reference.tokens[3]["token_ids"], reference.tokens[11]["token_ids"]])
    direct = inputs.model.detokenize(ids, num_tokens=4, num_inference_steps=1,
                                     generator=torch.Generator().manual_seed(0)).frames
    assert torch.equal(videos, direct)


def test_detokenize_rows_inputs_and_forwarding(reference):
    calls = []

    class StandIn:
        def detokenize(self, token_ids, num_tokens=None, **kwargs):
            calls.append((token_ids, num_tokens, kwargs))
            return SimpleNamespace(videos=torch.full((token_ids.shape[0], 17, 3, 32, 32), 0.5))

    expected = torch.stack([reference.tokens[i]["token_ids"] for i in (0, 1, 2)])
    plain = reference.tokens.with_format(None)
    for rows in (reference.tokens.select(range(3)), reference.tokens[:3], [plain[i] for i in range(3)], plain[:3]):
        videos = detokenize_rows(rows, StandIn(), num_tokens=2, guidance_scale=1.0, output_type="pt")
        assert videos.shape == (3, 17, 3, 32, 32)
        token_ids, num_tokens, kwargs = calls.pop()
        assert token_ids.dtype == torch.int64 and torch.equal(token_ids, expected)
        assert num_tokens == 2 and kwargs == {"guidance_scale": 1.0, "output_type": "pt"}
    detokenize_rows(reference.tokens[5], StandIn())  # one row
    token_ids, num_tokens, _ = calls.pop()
    assert torch.equal(token_ids, reference.tokens[5]["token_ids"][None]) and num_tokens is None
    # a pipeline (callable, diffusers-style `.frames`)
    pipeline = mock.Mock(return_value=SimpleNamespace(frames=torch.zeros(1, 17, 3, 32, 32)), spec=["__call__"])
    assert detokenize_rows([plain[0]], pipeline).shape == (1, 17, 3, 32, 32)
    assert torch.equal(pipeline.call_args.args[0], reference.tokens[0]["token_ids"][None])
    with pytest.raises(ValueError, match="num_tokens must lie in 1..8"):
        detokenize_rows([plain[0]], StandIn(), num_tokens=9)
    with pytest.raises(ValueError, match="different shapes"):
        detokenize_rows([{"token_ids": [[1, 2]]}, {"token_ids": [[1, 2], [3, 4]]}], StandIn())
