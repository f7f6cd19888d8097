"""Training VideoFlexTok models: the official objective, streaming clips, precomputed latents and an accelerate
training loop."""

from .data import ClipSampler, StreamingClipDataset
from .latents import LatentDataset, precompute_latents
from .objective import FlowMatchingLossOutput, FlowMatchingObjective, flow_matching_loss, sample_num_tokens
from .trainer import ExponentialMovingAverage, Trainer, TrainingConfig

__all__ = [
    "ClipSampler",
    "ExponentialMovingAverage",
    "FlowMatchingLossOutput",
    "FlowMatchingObjective",
    "LatentDataset",
    "StreamingClipDataset",
    "Trainer",
    "TrainingConfig",
    "flow_matching_loss",
    "precompute_latents",
    "sample_num_tokens",
]
