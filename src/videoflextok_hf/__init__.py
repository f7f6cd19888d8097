"""VideoFlexTok for the Hugging Face ecosystem: a coarse-to-fine video tokenizer with a rectified-flow decoder."""

__version__ = "0.1.0"

from transformers import AutoConfig, AutoModel  # noqa: E402

from .default_model import load_default_model  # noqa: E402
from .modeling.configuration_videoflextok import VideoFlexTokConfig  # noqa: E402
from .modeling.modeling_videoflextok import VideoFlexTokEncoderOutput, VideoFlexTokModel  # noqa: E402

AutoConfig.register(VideoFlexTokConfig.model_type, VideoFlexTokConfig, exist_ok=True)
AutoModel.register(VideoFlexTokConfig, VideoFlexTokModel, exist_ok=True)
# save_pretrained also writes the flat modeling folder and an `auto_map`, so that saved models load as Hub remote
# code (`trust_remote_code=True`) where this package is not installed
VideoFlexTokConfig.register_for_auto_class()
VideoFlexTokModel.register_for_auto_class("AutoModel")

# the decoding classes need diffusers, which is slow to import: load them on first use
_PIPELINE_EXPORTS = (
    "AdaptiveProjectedGuidance",
    "VideoFlexTokFlowMatchScheduler",
    "VideoFlexTokPipeline",
    "VideoFlexTokPipelineOutput",
)


def __getattr__(name: str):
    if name in _PIPELINE_EXPORTS:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'videoflextok_hf' has no attribute {name!r}")


__all__ = [
    "VideoFlexTokConfig",
    "VideoFlexTokEncoderOutput",
    "VideoFlexTokModel",
    "__version__",
    "load_default_model",
    *_PIPELINE_EXPORTS,
]
