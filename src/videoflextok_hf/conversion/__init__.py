"""Conversion of official VideoFlexTok checkpoints (hydra config + `video_tokenizer.` weights)."""

from .convert_original import (
    CONVERSION_VERSION,
    config_from_original,
    convert,
    convert_state_dict,
    load_original,
    read_original_config,
    read_original_weights,
    vae_geometry_from_weights,
    vae_geometry_from_yaml,
)
from .original_config import ALLOWED_TARGETS, OriginalCheckpointError, check_targets, parse_original_config

__all__ = [
    "ALLOWED_TARGETS",
    "CONVERSION_VERSION",
    "OriginalCheckpointError",
    "check_targets",
    "config_from_original",
    "convert",
    "convert_state_dict",
    "load_original",
    "parse_original_config",
    "read_original_config",
    "read_original_weights",
    "vae_geometry_from_weights",
    "vae_geometry_from_yaml",
]
