"""Run by test subprocesses: decode fixed token ids with `DiffusionPipeline.from_pretrained(SOURCE,
trust_remote_code=True)` and save the frames.

usage: python decode_with_diffusers.py SOURCE OUTPUT.safetensors [--package]
Without --package the `videoflextok_hf` package must NOT be importable (the caller strips it from sys.path): the
release's own pipeline, scheduler and model code must do everything. With --package it decodes with
`videoflextok_hf.VideoFlexTokPipeline.from_pretrained` instead.
"""

import argparse
import importlib.util
import sys

import torch
from safetensors.torch import save_file


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("output")
    parser.add_argument("--package", action="store_true")
    args = parser.parse_args()
    if args.package:
        from videoflextok_hf import VideoFlexTokPipeline

        pipe = VideoFlexTokPipeline.from_pretrained(args.source)
    else:
        if importlib.util.find_spec("videoflextok_hf") is not None:
            sys.exit("videoflextok_hf is importable; the remote-code check needs it absent")
        from diffusers import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(args.source, trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    config = pipe.model.config
    generator = torch.Generator().manual_seed(0)
    token_ids = torch.randint(0, config.codebook_size, (2, 9, config.num_registers), generator=generator)
    frames = pipe(token_ids, num_tokens=[3, config.num_registers], num_inference_steps=2,
                  generator=torch.Generator().manual_seed(1)).frames
    default_steps = torch.tensor([config.decoding_defaults["num_inference_steps"]])
    save_file({"frames": frames.contiguous(), "default_steps": default_steps,
               "remote": torch.tensor([int("videoflextok_hf" not in type(pipe).__module__)])}, args.output)


if __name__ == "__main__":
    main()
