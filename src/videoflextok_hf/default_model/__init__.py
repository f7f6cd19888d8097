"""The tiny VideoFlexTok model bundled with the package (trained by `videoflextok-train` on real video).

`load_default_model()` returns it; every `--model` option of the CLI defaults to its name, `videoflextok-tiny`
(`resolve_model_name` maps the name to the bundled folder). See `configs/tiny.yaml` and `docs/default_model.md` for
how it was trained. Its config carries the decoding settings its figures were measured with
(`config.decoding_defaults`: 1 step, no guidance), which `model.detokenize`, the pipeline, the CLI and the evaluation
use unless told otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL_NAME = "videoflextok-tiny"
# names that resolve to the bundled model wherever the package takes a model name (CLI `--model`, `load_model`)
DEFAULT_MODEL_ALIASES = (DEFAULT_MODEL_NAME, "videoflextok_hf/tiny")


def default_model_path() -> Path:
    path = Path(__file__).with_name("weights")
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"the bundled default model is missing from {path}; reinstall videoflextok-hf or train one with "
            "`videoflextok-train --config configs/tiny.yaml`."
        )
    return path


def resolve_model_name(name_or_path: str | os.PathLike) -> str | os.PathLike:
    """The bundled model's folder for one of `DEFAULT_MODEL_ALIASES`, anything else unchanged."""
    return default_model_path() if str(name_or_path) in DEFAULT_MODEL_ALIASES else name_or_path


def load_model(name_or_path: str | os.PathLike = DEFAULT_MODEL_NAME, **kwargs):
    """A `VideoFlexTokModel` from a folder, a Hub repo or the bundled model's name, in eval mode.

    The bundled model is stored in float16 (to stay small) and loaded in float32 unless `dtype` says otherwise.
    `kwargs` go to `from_pretrained`.
    """
    from ..modeling.modeling_videoflextok import VideoFlexTokModel

    resolved = resolve_model_name(name_or_path)
    if resolved is not name_or_path:
        import torch

        kwargs.setdefault("dtype", torch.float32)
    return VideoFlexTokModel.from_pretrained(resolved, **kwargs).eval()


def load_default_model(**kwargs):
    """The bundled tiny model, in eval mode and float32 (`kwargs` go to `from_pretrained`, e.g. `dtype`)."""
    return load_model(DEFAULT_MODEL_NAME, **kwargs)
