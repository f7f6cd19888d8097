"""How much a *linear* code of K real numbers per latent time step recovers of held-out clips: an outside yardstick
for the bundled model's tokens (docs/default_model.md, "What the tokens carry").

The code is principal component analysis of the compressor's latents, one vector per time step (all channels and
positions of the step), fitted on the bundled model's training corpus as its trainer sees it (the videos, frame
rates and decode sizes of `configs/tiny.yaml`; every frame-size window at a stride of 8, horizontal flips). Each held-out
clip is read as `videoflextok eval` reads it, every time step is projected on the first K components and decoded,
and PSNR against the input is reported. One token of the bundled model is six FSQ numbers, so K = 6 k is the size of
k tokens (in real numbers; the FSQ rounding itself costs the model only 0.1-0.25 dB, see the docs).

    python scripts/linear_code_bound.py                 # needs data/train_videos (scripts/fetch_training_videos.sh)

About 3 minutes on 2 CPU cores. Hand-written PCA (`torch.linalg.svd`): the ecosystem has none for torch tensors that
is worth a dependency for one SVD.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from videoflextok_hf import load_default_model  # noqa: E402
from videoflextok_hf.data import read_video  # noqa: E402
from videoflextok_hf.metrics import psnr  # noqa: E402
from videoflextok_hf.samples import SAMPLE_VIDEO  # noqa: E402
from videoflextok_hf.training import TrainingConfig  # noqa: E402
from videoflextok_hf.training.data import decode_sizes, expand_video_paths  # noqa: E402

TRAINING_CONFIG = ROOT / "configs/tiny.yaml"  # stage 1 of the bundled model: its corpus and augmentation
HELD_OUT = [str(SAMPLE_VIDEO), str(ROOT.parent / "shared/data/porsche.mp4"),
            str(ROOT.parent / "shared/data/orig_clip.mp4"), "/tmp/Megamind.avi"]


def step_vectors(compressor, video: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
    """`[3, T, H, W]` -> one row per latent time step `[t, C * h * w]`, and the latent shape `[C, t, h, w]`."""
    latents = compressor.encode(video[None]).latent_dist.mean[0]
    return latents.transpose(0, 1).flatten(1), latents.shape


def training_vectors(compressor, training: TrainingConfig, frame_size: int) -> torch.Tensor:
    rows = []
    sizes = decode_sizes(frame_size, training.decode_size, training.random_crop)
    for path in expand_video_paths(training.videos):
        for fps in training.fps:
            try:
                videos = [read_video(path, fps=fps, size=size, frame_policy="trim") for size in sizes]
            except ValueError as error:
                # too short at this frame rate (the trainer skips it too), or fewer frames decode than the container
                # lists (the trainer trains on those that decode; tree.avi's 68 of 444, motion.mov at 12 fps)
                print(f"skipping {path.name} at {fps:g} fps: {str(error).split(': ', 1)[-1][:100]}", file=sys.stderr)
                continue
            for size, video in zip(sizes, videos):
                for top in range(0, size - frame_size + 1, 8):
                    for left in range(0, size - frame_size + 1, 8):
                        window = video[:, :, top : top + frame_size, left : left + frame_size]
                        for clip in (window, window.flip(-1)):
                            rows.append(step_vectors(compressor, clip)[0][1:])  # steps of 4 frames
    return torch.cat(rows).double()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(TRAINING_CONFIG),
                        help="training config whose videos, fps and decode_size make the corpus")
    parser.add_argument("--held-out", nargs="+", default=HELD_OUT)
    parser.add_argument("--components", default="6,12,24,48,96,192,768", help="comma list of K")
    parser.add_argument("--json", help="also write the table as JSON")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = load_default_model().float().eval()
    compressor, config = model.vae, model.config
    ks = [int(k) for k in args.components.split(",")]

    vectors = training_vectors(compressor, TrainingConfig.from_file(args.config), config.image_size)
    mean = vectors.mean(0)
    _, _, components = torch.linalg.svd(vectors - mean, full_matrices=False)  # rows: principal directions
    print(f"fitted on {len(vectors)} time steps of {vectors.shape[1]} numbers", file=sys.stderr)

    table = {}
    for path in args.held_out:
        if not Path(path).exists():
            print(f"skipping {path}: not found (Megamind.avi is opencv-doc's, see docs/default_model.md)", file=sys.stderr)
            continue
        video = read_video(path, fps=config.fps, size=config.image_size, frame_policy="resample")
        rows, shape = step_vectors(compressor, video)
        target = ((video[None] + 1) / 2).clamp(0, 1).transpose(1, 2)
        scores = {}
        for k in ks:
            basis = components[:k]
            rebuilt = ((rows.double() - mean) @ basis.T @ basis + mean).float()
            latents = rebuilt.view(shape[1], shape[0], *shape[2:]).transpose(0, 1)
            frames = ((compressor.decode(latents[None]).sample + 1) / 2).clamp(0, 1).transpose(1, 2)
            scores[k] = psnr(frames, target).mean().item()
        table[Path(path).name] = scores

    print("| clip | " + " | ".join(f"K = {k}" for k in ks) + " |")
    print("|---|" + "---:|" * len(ks))
    for name, scores in table.items():
        print(f"| {name} | " + " | ".join(f"{scores[k]:.2f}" for k in ks) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
