"""Classifier-free guidance and the official adaptive projected guidance (APG, arXiv 2410.02416).

Both combine a conditional and an unconditional (null-condition) velocity `[B, C, T, H, W]`. APG, as the
official VideoFlexTok sampler applies it, measures norms and projections over (T, H, W) separately for every
channel of every sample. Unlike the official code (one momentum buffer shared by the whole batch), each sample
keeps its own momentum buffer, so a video's result does not depend on what else is in the batch.

Mapping to diffusers' experimental guiders (tested, not used at run time):
`classifier_free_guidance(s)` == `ClassifierFreeGuidance(guidance_scale=s)`;
`AdaptiveProjectedGuidance(momentum=m, eta=e, norm_threshold=r)` with scale g ==
`diffusers.guiders.AdaptiveProjectedGuidance(guidance_scale=g - 1, adaptive_projected_guidance_momentum=m,
adaptive_projected_guidance_rescale=r, adaptive_projected_guidance_norm_dim=(-1, -2, -3), eta=e,
use_original_formulation=True)`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

GuidanceScale = float | Callable[[float], float]
_NORM_DIMS = (-1, -2, -3)


def resolve_guidance_scale(guidance_scale: GuidanceScale, t: float) -> float:
    """The guidance scale at flow time `t` (a float, or a callable of t)."""
    value = guidance_scale(t) if callable(guidance_scale) else guidance_scale
    return float(value)


def classifier_free_guidance(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """`uncond + scale * (cond - uncond)`."""
    return uncond + scale * (cond - uncond)


def project(vector: torch.Tensor, direction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split `vector` into its components parallel and orthogonal to `direction`, per channel over (T, H, W),
    in float64 (cast back to `vector`'s dtype)."""
    dtype = vector.dtype
    vector, direction = vector.double(), F.normalize(direction.double(), dim=_NORM_DIMS)
    parallel = (vector * direction).sum(dim=_NORM_DIMS, keepdim=True) * direction
    return parallel.to(dtype), (vector - parallel).to(dtype)


class AdaptiveProjectedGuidance:
    """Stateful APG for one sampling run (the momentum buffer spans the steps).

    Args:
        momentum (`float`): running average `r <- (cond - uncond) + momentum * r` (0 disables it).
        eta (`float`): weight of the component of the update parallel to the conditional prediction.
        norm_threshold (`float`): clip the update's per-channel norm to this value (<= 0 disables clipping).
    """

    def __init__(self, momentum: float = 0.0, eta: float = 0.0, norm_threshold: float = 0.6):
        self.momentum = momentum
        self.eta = eta
        self.norm_threshold = norm_threshold
        self.running_average: torch.Tensor | None = None

    def reset(self) -> None:
        self.running_average = None

    def __call__(self, cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
        diff = cond - uncond
        if self.running_average is None:
            self.running_average = diff
        else:
            self.running_average = diff + self.momentum * self.running_average
        diff = self.running_average
        if self.norm_threshold > 0:
            norm = diff.norm(p=2, dim=_NORM_DIMS, keepdim=True)
            diff = diff * torch.minimum(torch.ones_like(diff), self.norm_threshold / norm)
        parallel, orthogonal = project(diff, cond)
        return cond + (scale - 1) * (orthogonal + self.eta * parallel)
