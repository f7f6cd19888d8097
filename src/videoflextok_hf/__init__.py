"""VideoFlexTok for the Hugging Face ecosystem: a coarse-to-fine video tokenizer with a rectified-flow decoder."""

from transformers import AutoConfig, AutoModel

from .modeling.configuration_videoflextok import VideoFlexTokConfig
from .modeling.modeling_videoflextok import VideoFlexTokEncoderOutput, VideoFlexTokModel
from .pipeline import (
    AdaptiveProjectedGuidance,
    VideoFlexTokFlowMatchScheduler,
    VideoFlexTokPipeline,
    VideoFlexTokPipelineOutput,
)

__version__ = "0.1.0"

AutoConfig.register(VideoFlexTokConfig.model_type, VideoFlexTokConfig, exist_ok=True)
AutoModel.register(VideoFlexTokConfig, VideoFlexTokModel, exist_ok=True)

__all__ = [
    "AdaptiveProjectedGuidance",
    "VideoFlexTokConfig",
    "VideoFlexTokEncoderOutput",
    "VideoFlexTokFlowMatchScheduler",
    "VideoFlexTokModel",
    "VideoFlexTokPipeline",
    "VideoFlexTokPipelineOutput",
    "__version__",
]
