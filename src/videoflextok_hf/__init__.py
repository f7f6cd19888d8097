"""VideoFlexTok for the Hugging Face ecosystem: a coarse-to-fine video tokenizer with a rectified-flow decoder."""

__version__ = "0.1.0"

from transformers import AutoConfig, AutoModel  # noqa: E402

from .default_model import load_default_model  # noqa: E402
from .modeling.configuration_videoflextok import VideoFlexTokConfig  # noqa: E402
from .modeling.modeling_videoflextok import VideoFlexTokEncoderOutput, VideoFlexTokModel  # noqa: E402
from .pipeline import (  # noqa: E402
    AdaptiveProjectedGuidance,
    VideoFlexTokFlowMatchScheduler,
    VideoFlexTokPipeline,
    VideoFlexTokPipelineOutput,
)

AutoConfig.register(VideoFlexTokConfig.model_type, VideoFlexTokConfig, exist_ok=True)
AutoModel.register(VideoFlexTokConfig, VideoFlexTokModel, exist_ok=True)
# save_pretrained also writes the flat modeling folder and an `auto_map`, so that saved models load as Hub remote
# code (`trust_remote_code=True`) where this package is not installed
VideoFlexTokConfig.register_for_auto_class()
VideoFlexTokModel.register_for_auto_class("AutoModel")

__all__ = [
    "AdaptiveProjectedGuidance",
    "VideoFlexTokConfig",
    "VideoFlexTokEncoderOutput",
    "VideoFlexTokFlowMatchScheduler",
    "VideoFlexTokModel",
    "VideoFlexTokPipeline",
    "VideoFlexTokPipelineOutput",
    "__version__",
    "load_default_model",
]
