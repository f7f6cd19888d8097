"""Convert an official VideoFlexTok checkpoint (hub repo or local folder) into a `VideoFlexTokModel`.

    videoflextok-convert --src EPFL-VILAB/videoflextok_d18_d28 --dst ./videoflextok_d18_d28

The official folder holds `config.json` (hydra tree under `video_flex_tok`) and `model.safetensors` (keys
prefixed `video_tokenizer.`). Keys are mapped strictly: a missing, unexpected or mis-shaped tensor is an error
listing all of them. After loading, every converted tensor is compared bit for bit with its source and the model
is run once on a small random video to check that it produces finite outputs.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..modeling.configuration_videoflextok import VideoFlexTokConfig
from ..modeling.modeling_videoflextok import VideoFlexTokModel
from ..modeling.vidtok import VidTokVAE
from .original_config import (
    ORIGINAL_PREFIX,
    KeyRule,
    OriginalCheckpointError,
    ParsedOriginal,
    parse_original_config,
)

logger = logging.getLogger(__name__)

CONVERSION_VERSION = "1"
VAE_PREFIX = ORIGINAL_PREFIX + "vae.vidtok."
_WRAPPER_INFIXES = ("_checkpoint_wrapped_module.", "_orig_mod.")


def resolve_original(path_or_repo_id: str | os.PathLike, revision: str | None = None, **hub_kwargs) -> Path:
    """A local folder, or a hub repo id downloaded (or taken from the cache) with `huggingface_hub`."""
    path = Path(path_or_repo_id)
    if path.is_dir():
        return path
    if path.exists():
        raise OriginalCheckpointError(f"{path} is a file; pass the folder holding config.json and model.safetensors.")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        folder = snapshot_download(
            str(path_or_repo_id), revision=revision, allow_patterns=["config.json", "model.safetensors"], **hub_kwargs
        )
    except HFValidationError:
        raise OriginalCheckpointError(
            f"{path_or_repo_id}: no such folder, and not a Hub repo id of the form 'org/name'."
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError, LocalEntryNotFoundError) as error:
        # RepositoryNotFoundError also covers gated/private repos without a token; LocalEntryNotFoundError is offline
        raise OriginalCheckpointError(
            f"{path_or_repo_id}{'@' + revision if revision else ''}: could not get the checkpoint from the Hub "
            f"({type(error).__name__}: {str(error).splitlines()[0]}). Check the repo id, the revision, your token "
            "(`hf auth login`) and the network, or pass a local folder."
        ) from None
    return Path(folder)


def read_original_config(folder: Path) -> dict:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise OriginalCheckpointError(f"{config_path} not found: an official checkpoint folder needs config.json.")
    try:
        # dict order is file order, which is the official execution order of each module_dict
        return json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise OriginalCheckpointError(f"{config_path} is not valid JSON ({error}); re-download the checkpoint.") from None


def read_original_weights(folder: Path) -> dict[str, torch.Tensor]:
    weights_path = folder / "model.safetensors"
    if not weights_path.is_file():
        raise OriginalCheckpointError(f"{weights_path} not found: an official checkpoint folder needs model.safetensors.")
    try:
        state_dict = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise OriginalCheckpointError(
            f"{weights_path} is not a readable safetensors file ({error}); it may be truncated: re-download it."
        ) from None
    cleaned = {}
    for key, tensor in state_dict.items():
        for infix in _WRAPPER_INFIXES:
            key = key.replace(infix, "")
        if key in cleaned:
            raise OriginalCheckpointError(f"{weights_path}: key {key!r} appears twice once wrapper infixes are removed.")
        cleaned[key] = tensor
    return cleaned


def vae_geometry_from_yaml(path: str | os.PathLike) -> dict:
    """VAE widths from a VidTok yaml (like `official/vae_config.yaml` of the test fixtures), parsed safely."""
    try:
        with open(path) as handle:
            tree = yaml.safe_load(handle)
    except OSError as error:
        raise OriginalCheckpointError(f"{path}: cannot read the VAE config ({error.strerror or error}).") from None
    except yaml.YAMLError as error:
        raise OriginalCheckpointError(f"{path}: not valid YAML ({error}).") from None
    try:
        params = tree["model"]["params"]["encoder_config"]["params"]
        geometry = {
            "base_channels": params["ch"],
            "channel_multipliers": list(params["ch_mult"]),
            "num_res_blocks": params["num_res_blocks"],
            "latent_channels": params["z_channels"],
            "in_channels": params.get("in_channels", 3),
            "out_channels": params.get("out_ch", 3),
            "temporal_downsample_factor": params.get("time_downsample_factor", 4),
        }
    except KeyError as error:
        raise OriginalCheckpointError(
            f"{path}: model.params.encoder_config.params lacks {error}; a VidTok yaml sets ch, ch_mult, "
            "num_res_blocks and z_channels."
        ) from None
    except (TypeError, AttributeError):
        raise OriginalCheckpointError(f"{path}: expected model.params.encoder_config.params in a VidTok yaml.") from None
    for key in ("spatial_ds", "tempo_ds", "spatial_us", "tempo_us"):
        if params.get(key) is not None:
            raise OriginalCheckpointError(f"{path}: custom `{key}` is not supported.")
    if not params.get("double_z", True) or params.get("norm_type", "layernorm") != "layernorm":
        raise OriginalCheckpointError(f"{path}: only double_z=true with layernorm VidTok VAEs are supported.")
    return geometry


def vae_geometry_from_weights(state_dict: dict[str, torch.Tensor]) -> dict:
    vae_weights = {key[len(VAE_PREFIX):]: value for key, value in state_dict.items() if key.startswith(VAE_PREFIX)}
    if not vae_weights:
        raise OriginalCheckpointError(f"the checkpoint holds no VAE weights (no keys start with {VAE_PREFIX!r}).")
    geometry = VidTokVAE.config_from_state_dict(vae_weights)
    geometry.setdefault("temporal_downsample_factor", 4)
    return geometry


def config_from_original(
    original: dict,
    vae_geometry: dict | None = None,
    source_checkpoint: str | None = None,
) -> tuple[VideoFlexTokConfig, ParsedOriginal]:
    """Our config (and the weight-key plan) for an official config tree."""
    parsed = parse_original_config(original, vae_geometry)
    config = VideoFlexTokConfig(
        **parsed.config_kwargs, source_checkpoint=source_checkpoint, conversion_version=CONVERSION_VERSION
    )
    return config, parsed


def _plan_with_vae(model: VideoFlexTokModel, parsed: ParsedOriginal) -> list[KeyRule]:
    # the VAE keeps the official VidTok names below one prefix
    return list(parsed.key_rules) + [KeyRule(VAE_PREFIX + key, f"vae.{key}") for key in model.vae.state_dict()]


def convert_state_dict(
    original_state_dict: dict[str, torch.Tensor], model: VideoFlexTokModel, parsed: ParsedOriginal
) -> dict[str, torch.Tensor]:
    """Map official tensors onto `model`'s state-dict keys, strictly (all problems are reported at once)."""
    rules = _plan_with_vae(model, parsed)
    expected_shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    planned = {rule.converted for rule in rules}
    if planned != set(expected_shapes):
        raise RuntimeError(
            "internal conversion plan mismatch: "
            f"unplanned model keys {sorted(set(expected_shapes) - planned)}, "
            f"planned keys absent from the model {sorted(planned - set(expected_shapes))}."
        )
    original_keys = {rule.original for rule in rules}
    missing = sorted(original_keys - set(original_state_dict))
    unexpected = sorted(set(original_state_dict) - original_keys)
    converted, mismatched = {}, []
    for rule in rules:
        if rule.original not in original_state_dict:
            continue
        tensor = original_state_dict[rule.original]
        if rule.transform is not None:
            tensor = rule.transform(tensor)
        if tuple(tensor.shape) != expected_shapes[rule.converted]:
            mismatched.append(
                f"{rule.original}: shape {tuple(original_state_dict[rule.original].shape)} does not fit "
                f"{rule.converted} {expected_shapes[rule.converted]}"
            )
            continue
        converted[rule.converted] = tensor.contiguous()
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {missing}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {unexpected}")
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): {mismatched}")
    if problems:
        raise OriginalCheckpointError(
            "the checkpoint does not match its config.json: " + "; ".join(problems)
            + ". Check that config.json and model.safetensors come from the same release."
        )
    return converted


def load_original(
    path_or_repo_id: str | os.PathLike,
    vae_config: str | os.PathLike | None = None,
    revision: str | None = None,
    verify: bool = True,
    **hub_kwargs,
) -> VideoFlexTokModel:
    """Build a `VideoFlexTokModel` from an official checkpoint folder or hub repo, with strict key checks."""
    folder = resolve_original(path_or_repo_id, revision=revision, **hub_kwargs)
    original = read_original_config(folder)
    state_dict = read_original_weights(folder)
    geometry = vae_geometry_from_yaml(vae_config) if vae_config else vae_geometry_from_weights(state_dict)
    source = str(path_or_repo_id) + (f"@{revision}" if revision else "")
    config, parsed = config_from_original(original, geometry, source_checkpoint=source)
    with torch.device("meta"):
        model = VideoFlexTokModel(config)
    converted = convert_state_dict(state_dict, model, parsed)
    model.load_state_dict(converted, strict=True, assign=True)
    model.eval()
    if verify:
        verify_conversion(model, converted)
    return model


def verify_conversion(model: VideoFlexTokModel, converted: dict[str, torch.Tensor]) -> None:
    """Every tensor in the model equals its converted source, and a small forward pass is finite."""
    state = model.state_dict()
    differing = [key for key, tensor in converted.items() if not torch.equal(state[key], tensor)]
    if differing:
        raise RuntimeError(f"converted tensors changed while loading: {differing}")
    config = model.config
    generator = torch.Generator().manual_seed(0)
    # the smallest frame both patch grids divide (one patch per side)
    grid = [math.lcm(config.encoder_patch_size[axis], config.decoder_patch_size[axis]) for axis in (1, 2)]
    height, width = (config.vae_spatial_downsample_factor * side for side in grid)
    video = torch.rand(1, config.vae_in_channels, config.chunk_size, height, width, generator=generator) * 2 - 1
    with torch.no_grad():
        tokens = model.encode(video.to(model.dtype)).token_ids
        latent_shape = (1, config.vae_latent_channels, config.latent_frames_per_chunk, *grid)
        latents = torch.randn(latent_shape, generator=generator)
        velocity = model.predict_velocity(latents.to(model.dtype), 0.5, tokens)
    if not torch.isfinite(velocity).all():
        raise RuntimeError("the converted model produced non-finite velocities on a random input.")


def convert(
    src: str,
    dst: str | os.PathLike,
    vae_config: str | None = None,
    revision: str | None = None,
    verify: bool = True,
) -> VideoFlexTokModel:
    """Convert `src` and write a release folder (model, scheduler, model card) to `dst`."""
    from ..hub import save_release

    model = load_original(src, vae_config=vae_config, revision=revision, verify=verify)
    save_release(model, dst, repo_id=Path(dst).name)
    logger.info("converted %s -> %s", src, dst)
    return model


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(
        prog="videoflextok-convert",
        description="Convert an official VideoFlexTok checkpoint (hub repo id or local folder) to a "
        "transformers save_pretrained folder.",
    )
    parser.add_argument("--src", required=True, help="official hub repo id or folder with config.json + model.safetensors")
    parser.add_argument("--dst", required=True, help="output folder (save_pretrained layout)")
    parser.add_argument("--src-revision", default=None, help="hub revision of --src")
    parser.add_argument(
        "--vae-config", default=None, help="VidTok yaml for non-standard VAE widths (default: read from the weights)"
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the post-conversion checks")
    parser.add_argument("--push-to-hub", metavar="REPO", help="also publish the release (model, scheduler, card) to REPO")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    parser.add_argument("--revision", default=None, help="branch of --push-to-hub to commit to (created if missing)")
    parser.add_argument("--license", default="other", help="license id for the model card")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    try:
        model = load_original(args.src, vae_config=args.vae_config, revision=args.src_revision, verify=not args.no_verify)
    except OriginalCheckpointError as error:
        raise SystemExit(f"videoflextok-convert: {error}") from None
    from ..hub import push_release, save_release

    # the release layout: model + modeling code at the root, scheduler/, and the rendered card as README.md
    save_release(model, args.dst, repo_id=args.push_to_hub or Path(args.dst).name, license=args.license)
    total = sum(p.numel() for p in model.parameters())
    print(f"Converted {args.src} -> {args.dst} ({total:,} parameters). Verified: {not args.no_verify}.")
    if args.push_to_hub:
        url = push_release(args.dst, args.push_to_hub, private=args.private, revision=args.revision)
        print(f"Pushed {args.dst} to {args.push_to_hub} ({url}).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
