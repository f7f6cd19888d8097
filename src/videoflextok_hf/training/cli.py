"""`videoflextok-train`: train a VideoFlexTok model from a YAML/JSON config (flags override its values).

    videoflextok-train --config configs/tiny.yaml --output-dir runs/tiny
    accelerate launch -m videoflextok_hf.training.cli --config ...   # several GPUs / nodes, same command
    videoflextok-train --config ... --precompute-latents latents/ # then: --latents-dir latents/
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging

import torch


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="videoflextok-train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="training config (YAML or JSON), see TrainingConfig")
    parser.add_argument("--output-dir", help="where checkpoints, logs and the final model go")
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"])
    parser.add_argument("--save-every", type=int)
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output-dir")
    parser.add_argument("--stop-after", type=int, help="stop (with a checkpoint) after this many steps of this run")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override any config key, e.g. --set ema_decay=0.99 (value parsed as JSON)")
    parser.add_argument("--num-workers", type=int, help="DataLoader worker processes decoding clips (per process)")
    parser.add_argument("--log-with", action="append", metavar="TRACKER",
                        help="accelerate tracker (tensorboard, wandb, ...; repeatable); log.jsonl is always written")
    parser.add_argument("--latents-dir", help="train on precomputed VAE latents in this folder")
    parser.add_argument("--precompute-latents", metavar="DIR",
                        help="only write the VAE latents of the training clips to DIR (resumable), then exit")
    parser.add_argument("--num-latent-clips", type=int,
                        help="with --precompute-latents: how many clips (default: one per clip start)")
    parser.add_argument("--export", help="after training, save the EMA weights as a from_pretrained folder here")
    parser.add_argument("--export-dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                        help="dtype of the exported weights (float16 halves the size; load with dtype=torch.float32)")
    return parser


def run(args: argparse.Namespace) -> int:
    from .trainer import Trainer, TrainingConfig

    overrides = {
        "output_dir": args.output_dir, "max_steps": args.max_steps, "batch_size": args.batch_size,
        "learning_rate": args.learning_rate, "seed": args.seed, "mixed_precision": args.mixed_precision,
        "save_every": args.save_every, "num_workers": args.num_workers, "log_with": args.log_with,
        "latents_dir": args.latents_dir,
    }
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    try:
        config = TrainingConfig.from_file(args.config, **overrides)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"videoflextok-train: {error}") from None
    if args.precompute_latents:
        from .latents import precompute_latents

        folder = precompute_latents(dataclasses.replace(config, latents_dir=None), args.precompute_latents,
                                    num_clips=args.num_latent_clips)
        print(f"latents written to {folder}; train on them with --latents-dir {folder}")
        return 0
    trainer = Trainer(config)
    trainer.train(resume=args.resume, stop_after=args.stop_after)
    if args.export:
        trainer.export(args.export, dtype=getattr(torch, args.export_dtype))
        print(f"exported EMA weights to {args.export}")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
