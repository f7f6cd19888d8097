#!/usr/bin/env python
"""Peak memory of training on a corpus N times larger: streaming clips (today) vs the in-memory clip cache.

A benchmark script, not a test (nothing is asserted). It builds a folder with N symlinked copies of every training
video of a config (each copy is a distinct file name, so it is indexed and sampled as a distinct video), then

    --mode stream   runs `videoflextok-train` on it for a few steps in a child process and samples the memory of the
                    whole process tree (trainer + DataLoader workers) every 0.1 s: peak of the summed PSS (shared
                    pages counted once) and peak RSS of the trainer process alone;
    --mode cache    builds the in-memory `ClipSampler` (every video decoded at every rate and size, float16) and
                    reports its decoded bytes and the process's peak RSS.

Examples (figures in docs/training.md):
    python benchmarks/training_memory.py --config configs/tiny.yaml --copies 1 --mode stream --steps 6
    python benchmarks/training_memory.py --config configs/tiny.yaml --copies 20 --mode stream --steps 6
    python benchmarks/training_memory.py --config configs/tiny.yaml --copies 1 --mode cache
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def build_corpus(config_path: str, copies: int, folder: Path) -> list[str]:
    from videoflextok_hf.training import TrainingConfig
    from videoflextok_hf.training.data import expand_video_paths

    config = TrainingConfig.from_file(config_path)
    videos = expand_video_paths(config.videos)
    for copy in range(copies):
        for index, path in enumerate(videos):
            link = folder / f"copy{copy:03d}" / f"{index:03d}_{path.name}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path.resolve())
    return [str(folder)]


def tree_memory(root: psutil.Process) -> tuple[int, int]:
    """(summed PSS of the process and its children, RSS of the process) in bytes."""
    pss = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            pss += process.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return pss, root.memory_info().rss


def stream(args, corpus: list[str], workdir: Path) -> dict:
    command = [sys.executable, "-m", "videoflextok_hf.training.cli", "--config", args.config,
               "--output-dir", str(workdir / "run"), "--max-steps", str(args.steps), "--save-every", "100000",
               "--set", f"videos={json.dumps(corpus)}", "--set", "log_every=1"]
    if args.batch_size:
        command += ["--batch-size", str(args.batch_size)]
    command += ["--set", f"clip_cache={json.dumps(args.clip_cache)}"]  # whatever the config says
    if args.num_workers is not None:
        command += ["--num-workers", str(args.num_workers)]
    start = time.time()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    process = psutil.Process(child.pid)
    peak_pss = peak_rss = 0
    while child.poll() is None:
        try:
            pss, rss = tree_memory(process)
            peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    _, stderr = child.communicate()
    if child.returncode:
        raise SystemExit(f"training failed:\n{stderr[-3000:]}")
    log = [json.loads(line) for line in (workdir / "run" / "log.jsonl").read_text().splitlines()]
    per_step = (log[-1]["elapsed_s"] - log[0]["elapsed_s"]) / max(1, len(log) - 1)
    return {"mode": "cache-trainer" if args.clip_cache else "stream", "s_per_step_after_first": round(per_step, 2),
            "peak_tree_pss_mib": round(peak_pss / 2**20, 1),
            "peak_trainer_rss_mib": round(peak_rss / 2**20, 1), "steps": len(log),
            "wall_s": round(time.time() - start, 1), "last_loss": log[-1]["loss"]}


def cache(args, corpus: list[str]) -> dict:
    from videoflextok_hf.training import TrainingConfig
    from videoflextok_hf.training.data import ClipSampler

    config = TrainingConfig.from_file(args.config)
    from videoflextok_hf import VideoFlexTokConfig

    model_config = VideoFlexTokConfig(**config.model)
    start = time.time()
    sampler = ClipSampler(corpus, clip_frames=model_config.chunk_size, image_size=model_config.image_size,
                          fps=config.fps, decode_size=config.decode_size, random_crop=config.random_crop,
                          horizontal_flip=config.horizontal_flip, channel_shuffle=config.channel_shuffle)
    decoded = sum(v.numel() * v.element_size() for v in sampler.videos)
    return {"mode": "cache", "decoded_mib": round(decoded / 2**20, 1), "num_clips": sampler.num_clips,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "wall_s": round(time.time() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/tiny.yaml")
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--mode", choices=["stream", "cache"], default="stream")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--num-workers", type=int)
    parser.add_argument("--clip-cache", action="store_true", help="stream mode: train with clip_cache: true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = build_corpus(args.config, args.copies, Path(tmp) / "corpus")
        result = stream(args, corpus, Path(tmp)) if args.mode == "stream" else cache(args, corpus)
    print(json.dumps({"copies": args.copies, "cpu": os.cpu_count(), **result}))


if __name__ == "__main__":
    main()
