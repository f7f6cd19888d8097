"""VideoFlexTok for the Hugging Face ecosystem: a coarse-to-fine video tokenizer with a rectified-flow decoder."""

__version__ = "0.1.0"

from transformers import AutoConfig, AutoModel  # noqa: E402

from .default_model import load_default_model, load_model  # noqa: E402
from .modeling.configuration_videoflextok import VideoFlexTokConfig  # noqa: E402
from .modeling.modeling_videoflextok import VideoFlexTokEncoderOutput, VideoFlexTokModel  # noqa: E402

AutoConfig.register(VideoFlexTokConfig.model_type, VideoFlexTokConfig, exist_ok=True)
AutoModel.register(VideoFlexTokConfig, VideoFlexTokModel, exist_ok=True)
# save_pretrained also writes the flat modeling folder and an `auto_map`, so that saved models load as Hub remote
# code (`trust_remote_code=True`) where this package is not installed
VideoFlexTokConfig.register_for_auto_class()
VideoFlexTokModel.register_for_auto_class("AutoModel")



def detokenize(model: VideoFlexTokModel, token_ids, **kwargs):
    """Decode token ids into videos with [`VideoFlexTokPipeline`] and the default scheduler; takes the pipeline's
    arguments (`num_tokens`, `num_inference_steps`, `guidance_scale`, `guidance`, `generator`, `output_type`, ...;
    the sampling settings default to the model's `config.decoding_defaults`) and returns its output."""
    from .pipeline import VideoFlexTokFlowMatchScheduler, VideoFlexTokPipeline

    return VideoFlexTokPipeline(model=model, scheduler=VideoFlexTokFlowMatchScheduler())(token_ids, **kwargs)


def from_original(path_or_repo_id, **kwargs) -> VideoFlexTokModel:
    """Load an official VideoFlexTok checkpoint (hub repo id or folder with its hydra `config.json` and
    `model.safetensors`) with strict key checks; see `videoflextok_hf.conversion.load_original`."""
    from .conversion import load_original

    return load_original(path_or_repo_id, **kwargs)


# `model.detokenize(...)` and `VideoFlexTokModel.from_original(...)`: conveniences that need this package (the
# pipeline, the converter), so they are attached here instead of living in the modeling file, which doubles as Hub
# remote code and holds model code only. A model loaded as remote code without this package has neither; it decodes
# with `DiffusionPipeline.from_pretrained(repo, trust_remote_code=True)` (see README).
VideoFlexTokModel.detokenize = detokenize
VideoFlexTokModel.from_original = staticmethod(from_original)

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
    "detokenize",
    "from_original",
    "load_default_model",
    "load_model",
    *_PIPELINE_EXPORTS,
]
