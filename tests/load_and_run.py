"""Run by test subprocesses: load a model with AutoModel, run it on fixed inputs, save the outputs.

usage: python load_and_run.py SOURCE OUTPUT.safetensors [--remote-code] [--revision REV] [--local-files-only]
With --remote-code the `videoflextok_hf` package must NOT be importable (the caller strips it from sys.path).
"""

import argparse
import importlib.util
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModel


def fixed_inputs(config):
    generator = torch.Generator().manual_seed(0)
    size = config["image_size"]
    video = torch.rand(2, 3, config["chunk_size"], size, size, generator=generator) * 2 - 1
    latent = size // 8
    noisy = torch.randn(2, config["vae_latent_channels"], 5, latent, latent, generator=generator)
    return video, noisy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("output")
    parser.add_argument("--remote-code", action="store_true")
    parser.add_argument("--revision")
    parser.add_argument("--local-files-only", action="store_true")
    args = parser.parse_args()
    package_found = importlib.util.find_spec("videoflextok_hf") is not None
    if args.remote_code and package_found:
        sys.exit("videoflextok_hf is importable; the remote-code check needs it absent")
    if not args.remote_code:
        import videoflextok_hf  # noqa: F401
    kwargs = {"trust_remote_code": True} if args.remote_code else {}
    if args.revision:
        kwargs["revision"] = args.revision
    if args.local_files_only:
        kwargs["local_files_only"] = True
    model = AutoModel.from_pretrained(args.source, **kwargs).eval()
    video, noisy = fixed_inputs(model.config.to_dict())
    with torch.no_grad():
        token_ids = model.encode(video).token_ids
        velocity = model.predict_velocity(noisy, 0.6, token_ids, num_tokens=[3, 8], unconditional=[False, True])
    save_file(
        {"token_ids": token_ids, "velocity": velocity,
         "module": torch.tensor([int("transformers_modules" in type(model).__module__)])},
        args.output,
    )


if __name__ == "__main__":
    main()
