"""Training VideoFlexTok models: the official objective, a clip sampler and an accelerate training loop."""

from .objective import FlowMatchingLossOutput, flow_matching_loss, sample_num_tokens
from .trainer import ExponentialMovingAverage, Trainer, TrainingConfig

__all__ = [
    "ExponentialMovingAverage",
    "FlowMatchingLossOutput",
    "Trainer",
    "TrainingConfig",
    "flow_matching_loss",
    "sample_num_tokens",
]
