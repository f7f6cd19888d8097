"""Finite scalar quantization (FSQ, arXiv 2309.15505) as used by VideoFlexTok.

Each code dimension i is bounded with a shifted tanh to `levels[i]` values and rounded; a code is the tuple of
those integers and its token id is their mixed-radix number (first dimension varies fastest).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class FiniteScalarQuantizer(nn.Module):
    """FSQ bottleneck with exact id <-> code conversion.

    Codes are the normalised values in [-1, 1] the decoder consumes (`(c - L // 2) / (L // 2)` for the integer
    level index `c`). The levels are plain Python ints: the module holds no buffers, so nothing needs re-creating
    after `from_pretrained` materialises the model from the meta device.
    """

    def __init__(self, levels: Sequence[int], bound_eps: float = 1e-3):
        super().__init__()
        self.levels = tuple(int(level) for level in levels)
        self.bound_eps = bound_eps
        self.basis = tuple(math.prod(self.levels[:i]) for i in range(len(self.levels)))

    @property
    def dim(self) -> int:
        return len(self.levels)

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    def extra_repr(self) -> str:
        return f"levels={list(self.levels)}, codebook_size={self.codebook_size}"

    def _level_tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        levels = torch.tensor(self.levels, dtype=torch.float32, device=device)
        half_width = torch.tensor([level // 2 for level in self.levels], dtype=torch.float32, device=device)
        basis = torch.tensor(self.basis, dtype=torch.long, device=device)
        return levels, half_width, basis

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash `z` so that rounding yields exactly `levels[i]` values per dimension (even levels are offset
        by half a step so that they stay symmetric)."""
        levels, _, _ = self._level_tensors(z.device)
        half_range = (levels - 1) * (1 + self.bound_eps) / 2
        offset = torch.where(levels.remainder(2) == 0, 0.5, 0.0)
        shift = (offset / half_range).atanh()
        return (z + shift).tanh() * half_range - offset

    def forward(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.LongTensor]:
        """Quantize `latents [..., dim]` -> (codes in [-1, 1] with straight-through gradients, token ids).

        Runs in float32 whatever the input dtype or autocast state (rounding is precision-sensitive).
        """
        if latents.shape[-1] != self.dim:
            raise ValueError(
                f"FSQ expects latents with last dimension {self.dim} (one per level of {list(self.levels)}), "
                f"got shape {tuple(latents.shape)}."
            )
        with torch.autocast(device_type=latents.device.type, enabled=False):
            bounded = self.bound(latents.float())
            rounded = bounded.round()
            _, half_width, basis = self._level_tensors(latents.device)
            # straight-through estimator: forward uses the rounded value, backward the identity
            codes = (bounded + (rounded - bounded).detach()) / half_width
            indices = (rounded.detach() + half_width).long()
            token_ids = (indices * basis).sum(dim=-1)
        return codes, token_ids

    def codes_to_ids(self, codes: torch.Tensor) -> torch.LongTensor:
        """Normalised codes `[..., dim]` -> token ids `[...]`. Codes must lie on the FSQ grid."""
        if codes.shape[-1] != self.dim:
            raise ValueError(f"codes must have last dimension {self.dim}, got shape {tuple(codes.shape)}.")
        _, half_width, basis = self._level_tensors(codes.device)
        indices = (codes.float() * half_width + half_width).round().long()
        levels = torch.tensor(self.levels, device=codes.device)
        if (indices < 0).any() or (indices >= levels).any():
            raise ValueError(f"codes lie outside the FSQ grid of levels {list(self.levels)} (values must be in [-1, 1]).")
        return (indices * basis).sum(dim=-1)

    def ids_to_codes(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Token ids `[...]` -> normalised float32 codes `[..., dim]`."""
        self.check_ids(token_ids)
        return self.ids_to_codes_unchecked(token_ids)

    def ids_to_codes_unchecked(self, token_ids: torch.Tensor) -> torch.Tensor:
        """`ids_to_codes` for ids already checked with `check_ids` (no host synchronisation: for sampling loops)."""
        _, half_width, basis = self._level_tensors(token_ids.device)
        levels = torch.tensor(self.levels, device=token_ids.device)
        indices = (token_ids.long().unsqueeze(-1) // basis) % levels
        return (indices.float() - half_width) / half_width

    def check_ids(self, token_ids: torch.Tensor, name: str = "token_ids") -> None:
        """Raise unless `token_ids` is an integer tensor with values in [0, codebook_size)."""
        if token_ids.dtype.is_floating_point or token_ids.dtype == torch.bool:
            raise TypeError(f"token ids must be an integer tensor, got dtype {token_ids.dtype}.")
        if token_ids.numel() == 0:
            return
        low, high = int(token_ids.min()), int(token_ids.max())
        if low < 0 or high >= self.codebook_size:
            raise ValueError(
                f"{name} must lie in [0, {self.codebook_size - 1}] (FSQ levels {list(self.levels)}), "
                f"got values in [{low}, {high}]."
            )
