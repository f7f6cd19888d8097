"""The tiny VideoFlexTok model bundled with the package (trained by `videoflextok-train` on real video).

`load_default_model()` returns it; `VideoFlexTokModel.from_pretrained("videoflextok-tiny")` and every `--model`
option of the CLI default to it. See `configs/tiny.yaml` and `docs/default_model.md` for how it was trained.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_NAME = "videoflextok-tiny"


def default_model_path() -> Path:
    path = Path(__file__).with_name("weights")
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"the bundled default model is missing from {path}; reinstall videoflextok-hf or train one with "
            "`videoflextok-train --config configs/tiny.yaml`."
        )
    return path


def load_default_model(**kwargs):
    """The bundled tiny model, in eval mode and float32 (`kwargs` go to `from_pretrained`, e.g. `dtype`)."""
    from ..modeling.modeling_videoflextok import VideoFlexTokModel

    return VideoFlexTokModel.from_pretrained(DEFAULT_MODEL_NAME, **kwargs).eval()
