"""The `videoflextok` command line.

    videoflextok tokenize VIDEO -o tokens.safetensors
    videoflextok detokenize tokens.safetensors -o out.mp4 --num-tokens 8
    videoflextok reconstruct [VIDEO] --num-tokens 1,4,16,32 -o side_by_side.mp4 --grid grid.png
    videoflextok eval VIDEO [VIDEO ...] --num-tokens 1,2,4,8,16,32 --seeds 0,1
    videoflextok convert --src EPFL-VILAB/videoflextok_d18_d28 --dst out/
    videoflextok push FOLDER REPO [--private] [--revision BRANCH]
    videoflextok train --config configs/tiny.yaml

Every `--model` defaults to the tiny model bundled with the package (`videoflextok-tiny`); `reconstruct` and `eval`
default to the real clip bundled with it (`videoflextok_hf.samples.SAMPLE_VIDEO`). VIDEO may be a path or
`pkg://<package>/<file>` for a file inside an installed package.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from .samples import SAMPLE_VIDEO

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _device(text: str) -> torch.device:
    try:
        return torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (e.g. cpu, cuda, cuda:1, mps)") from None


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="videoflextok-tiny",
                        help="model folder or Hub repo (default: the bundled videoflextok-tiny)")
    parser.add_argument("--device", type=_device, default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--vae-dtype", choices=sorted(DTYPES), default=None,
                        help="run the VidTok VAE in this dtype (default: --dtype); on CPU, bfloat16 needs a CPU with "
                             "bf16 units (AVX512-BF16 or AMX) and is refused elsewhere (see benchmarks/README.md)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the transformer blocks (model.compile_blocks()): faster sampling after a "
                             "one-time compilation per shape (see benchmarks/README.md)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the decoding noise")


def _add_decode_args(parser: argparse.ArgumentParser) -> None:
    # defaults: the model's recommended settings (`config.decoding_defaults`; the bundled model: 1 step, no guidance)
    parser.add_argument("--steps", type=int, default=None, help="sampling steps per chunk (default: the model's)")
    parser.add_argument("--guidance-scale", type=float, default=None, help="default: the model's")
    parser.add_argument("--guidance", choices=["apg", "cfg", "none"], default=None, help="default: the model's")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cpu_lacks_units_for(dtype: torch.dtype) -> str | None:
    """Why `dtype` would be slow on this CPU, or None. Without native units torch emulates bfloat16 / float16
    convolutions and matmuls in scalar code: a VAE encode that takes 15 s in float32 ran for over 23 minutes in
    bfloat16 on an AVX2-only CPU."""
    flags = _cpu_flags()
    if dtype == torch.bfloat16:
        if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported() or flags & {"avx512_bf16",
                                                                                                    "amx_bf16"}:
            return None
        return "this CPU has no bfloat16 units (AVX512-BF16 or AMX-BF16)"
    if dtype == torch.float16:
        if torch.cpu._is_amx_fp16_supported() or flags & {"avx512_fp16", "amx_fp16"}:
            return None
        return "this CPU has no float16 units (AVX512-FP16 or AMX-FP16)"
    return None


def _check_cpu_dtype(args) -> None:
    """Refuse a half-precision dtype on a CPU that would emulate it (minutes instead of seconds), saying why."""
    if args.device.type != "cpu":
        return
    for flag, name in (("--vae-dtype", args.vae_dtype), ("--dtype", args.dtype)):
        reason = _cpu_lacks_units_for(DTYPES[name]) if name is not None else None
        if reason:
            raise ValueError(f"{flag} {name}: {reason}, so torch would emulate it many times slower than float32 "
                             f"(minutes per clip). Use float32 here, or a CPU with those units.")


def _load_model(args):
    from .default_model import load_model

    _check_cpu_dtype(args)
    try:
        model = load_model(args.model, dtype=DTYPES[args.dtype])
    except (OSError, ValueError) as error:
        if "HFValidationError" not in {type(e).__name__ for e in (error, error.__cause__, error.__context__)}:
            raise
        # huggingface_hub's complaint about the repo id form hides the real problem: a mistyped local folder
        raise FileNotFoundError(
            f"--model {args.model}: no such model folder, and not a Hub repo id of the form 'org/name'."
        ) from None
    if args.vae_dtype is not None:
        if model.config.compressor != "vidtok":
            raise ValueError(f"--vae-dtype applies to models with the VidTok VAE; {args.model} uses the parameter-free "
                             f"{model.config.compressor!r} compressor, which runs in --dtype. Drop --vae-dtype.")
        model.vae.to(DTYPES[args.vae_dtype])
    if hasattr(args, "steps"):  # decoding commands: what is not given comes from the model (printed in reports)
        defaults = model.config.decoding_defaults
        args.steps = defaults["num_inference_steps"] if args.steps is None else args.steps
        args.guidance = defaults["guidance"] if args.guidance is None else args.guidance
        args.guidance_scale = defaults["guidance_scale"] if args.guidance_scale is None else args.guidance_scale
    try:
        model = model.to(args.device).eval()
    except (RuntimeError, AssertionError) as error:  # e.g. cuda on a machine without a GPU (torch asserts)
        raise ValueError(f"--device {args.device} is not usable here: {error}") from None
    if getattr(args, "compile", False):
        model.compile_blocks()
    return model


def _budgets(model, num_tokens: list[int] | None) -> list[int]:
    """The token budgets to compare: as given (each checked), or 1, 2, 4, ... up to the model's N."""
    if num_tokens is None:
        registers, k, budgets = model.config.num_registers, 1, []
        while k < registers:
            budgets.append(k)
            k *= 2
        return budgets + [registers]
    for k in num_tokens:
        _check_num_tokens(model, k)
    return num_tokens


def _check_num_tokens(model, num_tokens: int | None) -> None:
    registers = model.config.num_registers
    if num_tokens is not None and not 1 <= num_tokens <= registers:
        raise ValueError(f"--num-tokens must lie in 1..{registers} (tokens per step of this model), got {num_tokens}.")


def _read(model, path: str, frame_policy: str, resize_mode: str = "official") -> torch.Tensor:
    from .data import read_video
    from .utils import resolve_source

    config = model.config
    video = read_video(resolve_source(str(path)), fps=config.fps, size=config.image_size, frame_policy=frame_policy,
                       chunk_size=config.chunk_size, overlap=config.overlap_size_frames, resize_mode=resize_mode)
    return video[None]


def cmd_tokenize(args) -> None:
    from safetensors.torch import save

    from .utils import atomic_write_file

    model = _load_model(args)
    _check_num_tokens(model, args.num_tokens)
    video = _read(model, args.video, args.frame_policy, args.resize_mode)
    generator = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        token_ids = model.encode(video.to(args.device, model.vae_dtype), sample_posterior=args.sample_posterior,
                                 generator=generator).token_ids.cpu()
    if args.num_tokens is not None:
        token_ids = token_ids[..., : args.num_tokens]
    metadata = {"model": str(args.model), "source": str(args.video), "fps": str(model.config.fps),
                "num_frames": str(video.shape[2]), "tokens_per_step": str(token_ids.shape[-1])}
    with atomic_write_file(args.output) as handle:  # a full disk or a kill never leaves a truncated file
        handle.write(save({"token_ids": token_ids.contiguous()}, metadata=metadata))
    print(f"{args.video}: {video.shape[2]} frames -> token ids {tuple(token_ids.shape)} -> {args.output}")


def cmd_detokenize(args) -> None:
    from safetensors import SafetensorError, safe_open

    from .data import write_video

    model = _load_model(args)
    _check_num_tokens(model, args.num_tokens)
    try:
        with safe_open(args.tokens, framework="pt") as handle:
            if "token_ids" not in handle.keys():
                raise ValueError(f"{args.tokens} holds no `token_ids` tensor (written by `videoflextok tokenize`?).")
            token_ids = handle.get_tensor("token_ids")
    except SafetensorError as error:
        raise ValueError(f"{args.tokens}: not a readable token file ({error}); it is truncated or corrupt, or not "
                         "written by `videoflextok tokenize`.") from None
    output = model.detokenize(token_ids.to(args.device), num_tokens=args.num_tokens, num_inference_steps=args.steps,
                              guidance_scale=args.guidance_scale, guidance=args.guidance,
                              generator=torch.Generator().manual_seed(args.seed))
    video = output.frames[0].transpose(0, 1) * 2 - 1  # [3, T, H, W]
    write_video(args.output, video, fps=model.config.fps)
    print(f"{args.tokens}: token ids {tuple(token_ids.shape)} -> {video.shape[1]} frames -> {args.output}")


def cmd_reconstruct(args) -> None:
    from .data import write_video
    from .evaluation import frame_grid, reconstruct, side_by_side

    model = _load_model(args)
    video = _read(model, args.video, args.frame_policy, args.resize_mode)
    args.num_tokens = _budgets(model, args.num_tokens)
    result = reconstruct(model, video, args.num_tokens, seeds=[args.seed], num_inference_steps=args.steps,
                         guidance_scale=args.guidance_scale, guidance=args.guidance, progress=True)
    write_video(args.output, side_by_side(video, result), fps=model.config.fps)
    print(f"side-by-side video (input | k = {', '.join(map(str, args.num_tokens))}) -> {args.output}")
    if args.grid:
        frame_grid(video, result).save(args.grid)
        print(f"frame grid (rows: frames, columns: input and each k) -> {args.grid}")
    print(result.table())


def cmd_eval(args) -> None:
    from .evaluation import reconstruct

    model = _load_model(args)
    args.num_tokens = _budgets(model, args.num_tokens)
    totals: dict[int, list[tuple[float, float]]] = {k: [] for k in args.num_tokens}
    for path in args.videos:
        result = reconstruct(model, _read(model, path, args.frame_policy, args.resize_mode), args.num_tokens, seeds=args.seeds,
                             num_inference_steps=args.steps, guidance_scale=args.guidance_scale, guidance=args.guidance)
        for k in args.num_tokens:
            totals[k].append((result.psnr[k], result.ssim[k]))
    lines = [f"{len(args.videos)} video(s), seeds {args.seeds}, {args.steps} steps, {args.guidance} "
             f"{args.guidance_scale}", "", "| k (tokens per step) | PSNR (dB) | SSIM |", "|---:|---:|---:|"]
    summary = {}
    for k, scores in totals.items():
        mean_psnr = sum(s[0] for s in scores) / len(scores)
        mean_ssim = sum(s[1] for s in scores) / len(scores)
        summary[k] = {"psnr": mean_psnr, "ssim": mean_ssim}
        lines.append(f"| {k} | {mean_psnr:.2f} | {mean_ssim:.4f} |")
    print("\n".join(lines))
    if args.json:
        from .utils import atomic_write_file

        with atomic_write_file(args.json, "w") as handle:
            handle.write(json.dumps(summary, indent=2))


def cmd_push(args) -> None:
    from .hub import push_release, save_release
    from .modeling.modeling_videoflextok import VideoFlexTokModel

    folder = Path(args.folder)
    model = VideoFlexTokModel.from_pretrained(folder)
    save_release(model, folder, repo_id=args.repo, license=args.license)
    url = push_release(folder, args.repo, private=args.private, revision=args.revision)
    print(f"pushed {folder} to {args.repo} ({url})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videoflextok", description="VideoFlexTok video tokenizer.")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("tokenize", help="video file -> token ids (.safetensors)")
    p.add_argument("video")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--num-tokens", type=int, help="keep only the first k tokens of every step")
    p.add_argument("--frame-policy", default="resample", choices=["strict", "resample", "pad", "trim"])
    p.add_argument("--resize-mode", default="official", choices=["official", "crop"],
                   help="frames reach the model's frame size as the official reader resizes them (default; a "
                        "non-square model stretches to exactly H x W) or keeping the aspect ratio (cover + centre crop)")
    p.add_argument("--sample-posterior", action="store_true", help="sample the VAE posterior (official behaviour)")
    _add_model_args(p)
    p.set_defaults(func=cmd_tokenize)

    p = commands.add_parser("detokenize", help="token ids (.safetensors) -> video file")
    p.add_argument("tokens")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--num-tokens", type=int, help="decode from the first k tokens of every step")
    _add_model_args(p)
    _add_decode_args(p)
    p.set_defaults(func=cmd_detokenize)

    p = commands.add_parser("reconstruct", help="video -> tokens -> videos for several k, side by side")
    p.add_argument("video", nargs="?", default=str(SAMPLE_VIDEO),
                   help="video file (default: the bundled real clip, carphone.mp4)")
    p.add_argument("--num-tokens", type=_int_list, help="comma-separated token budgets (default: 1, 2, 4, ... N)")
    p.add_argument("-o", "--output", required=True, help="side-by-side video (input | each k)")
    p.add_argument("--grid", help="PNG grid of frames x k")
    p.add_argument("--frame-policy", default="resample", choices=["strict", "resample", "pad", "trim"])
    p.add_argument("--resize-mode", default="official", choices=["official", "crop"],
                   help="frames reach the model's frame size as the official reader resizes them (default; a "
                        "non-square model stretches to exactly H x W) or keeping the aspect ratio (cover + centre crop)")
    _add_model_args(p)
    _add_decode_args(p)
    p.set_defaults(func=cmd_reconstruct)

    p = commands.add_parser("eval", help="PSNR / SSIM per token budget")
    p.add_argument("videos", nargs="*", default=[str(SAMPLE_VIDEO)],
                   help="video files (default: the bundled real clip, carphone.mp4)")
    p.add_argument("--num-tokens", type=_int_list, help="comma-separated token budgets (default: 1, 2, 4, ... N)")
    p.add_argument("--seeds", type=_int_list, default=[0])
    p.add_argument("--frame-policy", default="resample", choices=["strict", "resample", "pad", "trim"])
    p.add_argument("--resize-mode", default="official", choices=["official", "crop"],
                   help="frames reach the model's frame size as the official reader resizes them (default; a "
                        "non-square model stretches to exactly H x W) or keeping the aspect ratio (cover + centre crop)")
    p.add_argument("--json", help="also write the table as JSON")
    _add_model_args(p)
    _add_decode_args(p)
    p.set_defaults(func=cmd_eval)

    from .conversion.convert_original import build_parser as convert_parser

    p = commands.add_parser("convert", help="official checkpoint -> release folder (see videoflextok-convert)")
    convert_parser(p)
    p.set_defaults(func=_convert)

    p = commands.add_parser("push", help="upload a saved model folder as a release (card rendered from it)")
    p.add_argument("folder")
    p.add_argument("repo")
    p.add_argument("--private", action="store_true")
    p.add_argument("--revision")
    p.add_argument("--license", default="apache-2.0")
    p.set_defaults(func=cmd_push)

    from .training.cli import build_parser as train_parser

    p = commands.add_parser("train", help="train a model (see videoflextok-train)")
    train_parser(p)
    p.set_defaults(func=_train)
    return parser


def _convert(args) -> None:
    from .conversion.convert_original import run

    run(args)


def _train(args) -> None:
    from .training.cli import run

    run(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, OSError, TypeError) as error:
        print(f"videoflextok {args.command}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
