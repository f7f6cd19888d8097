"""Rectified-flow Euler scheduler with the official VideoFlexTok time grid.

The decoder is trained on x_t = t * noise + (1 - t) * x0 and predicts v = noise - x0. Sampling walks t from 1
(pure noise) to 0 with Euler steps x <- x - dt * v. The official sampler uses t = i / N for i = N..1 and
dt = 1 / N, with no shift; that is this scheduler's default grid.

Timesteps follow diffusers' flow-matching convention (`timesteps = sigmas * num_train_timesteps`), while the
VideoFlexTok decoder takes the flow time itself: pipelines pass `scheduler.sigmas[i]` to the model. Compared
with `FlowMatchEulerDiscreteScheduler(sigmas=[i/N ...])` the only difference is that the step size is the exact
official `1 / N` instead of a difference of float32 sigmas (measured: <= 1.2e-7 max abs after 30 steps on unit
velocities, see tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput


@dataclass
class FlowMatchSchedulerOutput(BaseOutput):
    """
    Args:
        prev_sample (`torch.Tensor`): the sample at the next (lower) time of the grid.
    """

    prev_sample: torch.Tensor


class VideoFlexTokFlowMatchScheduler(SchedulerMixin, ConfigMixin):
    """Euler sampler for rectified flow on the grid t = i / N (i = N..1), optionally shifted.

    Args:
        num_train_timesteps (`int`): scale between flow time and `timesteps` (diffusers convention).
        shift (`float`): time shift `s * t / (1 + (s - 1) * t)`; 1.0 (default) is the official unshifted grid.
    """

    config_name = "scheduler_config.json"
    order = 1
    _compatibles = ["FlowMatchEulerDiscreteScheduler"]

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000, shift: float = 1.0):
        if num_train_timesteps <= 0:
            raise ValueError(f"num_train_timesteps must be positive, got {num_train_timesteps}.")
        if shift <= 0:
            raise ValueError(f"shift must be positive, got {shift}.")
        self.sigmas: list[float] = []
        self.step_sizes: list[float] = []
        self.timesteps = torch.empty(0)
        self.num_inference_steps: int | None = None
        self._step_index: int | None = None

    def _shift(self, sigma: float) -> float:
        shift = self.config.shift
        return sigma if shift == 1.0 else shift * sigma / (1 + (shift - 1) * sigma)

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        sigmas: list[float] | None = None,
    ) -> None:
        """Set the sampling grid: `num_inference_steps` uniform steps, or explicit decreasing `sigmas` in (0, 1]
        (a final 0 is appended)."""
        if sigmas is None:
            if not isinstance(num_inference_steps, int) or isinstance(num_inference_steps, bool) or num_inference_steps < 1:
                raise ValueError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}.")
            steps = num_inference_steps
            grid = [self._shift(i / steps) for i in range(steps, 0, -1)]
            # the official sampler steps by exactly 1/N (not by differences of the grid)
            step_sizes = [1.0 / steps] * steps if self.config.shift == 1.0 else None
        else:
            grid = [self._shift(float(s)) for s in sigmas]
            if not grid or any(not 0.0 < s <= 1.0 for s in grid) or any(a <= b for a, b in zip(grid, grid[1:])):
                raise ValueError(f"sigmas must be strictly decreasing values in (0, 1], got {list(sigmas)}.")
            if num_inference_steps is not None and num_inference_steps != len(grid):
                raise ValueError(f"num_inference_steps={num_inference_steps} disagrees with {len(grid)} sigmas.")
            step_sizes = None
        full = grid + [0.0]
        self.sigmas = full
        self.step_sizes = step_sizes or [a - b for a, b in zip(full, full[1:])]
        self.timesteps = torch.tensor(grid, dtype=torch.float32, device=device) * self.config.num_train_timesteps
        self.num_inference_steps = len(grid)
        self._step_index = None

    @property
    def step_index(self) -> int | None:
        return self._step_index

    def index_for_timestep(self, timestep: float | torch.Tensor) -> int:
        matches = (self.timesteps == torch.as_tensor(timestep, dtype=self.timesteps.dtype).to(self.timesteps.device))
        indices = matches.nonzero()
        if len(indices) == 0:
            raise ValueError(f"timestep {float(timestep)} is not on the current grid; call set_timesteps first.")
        return int(indices[0])

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        return_dict: bool = True,
    ) -> FlowMatchSchedulerOutput | tuple:
        """One Euler step `x <- x - dt * v` from `timestep` to the next grid point, computed in float32."""
        if not self.sigmas:
            raise RuntimeError("call set_timesteps before step.")
        if self._step_index is None or self.timesteps[self._step_index] != torch.as_tensor(timestep).to(self.timesteps):
            self._step_index = self.index_for_timestep(timestep)
        dt = self.step_sizes[self._step_index]
        prev_sample = sample.float() - dt * model_output.float()
        self._step_index += 1
        prev_sample = prev_sample.to(sample.dtype)
        if not return_dict:
            return (prev_sample,)
        return FlowMatchSchedulerOutput(prev_sample=prev_sample)

    def scale_noise(
        self, sample: torch.Tensor, timestep: float | torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """The training forward process `x_t = t * noise + (1 - t) * sample`, with `timestep` in the scheduler's
        units (flow time x num_train_timesteps), one value or one per sample."""
        sigma = torch.as_tensor(timestep, dtype=torch.float32, device=sample.device) / self.config.num_train_timesteps
        if sigma.dim() == 1:
            sigma = sigma.view(-1, *([1] * (sample.dim() - 1)))
        return sigma * noise + (1.0 - sigma) * sample

    def __len__(self) -> int:
        return self.config.num_train_timesteps
