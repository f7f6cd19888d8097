"""Growing a trained model to more tokens per time step.

A model's first k registers already form a coarse-to-fine code (nested dropout trains every prefix), so a model
with more registers can start from it: the old registers keep their weights and order, the new ones start as
copies of them (cyclically, plus a little noise so they do not stay identical) and learn the detail the old prefix
leaves out. Every other weight is shared unchanged; the decoder's register position table must already cover the
new count (its `max_sizes` bound the register index). Used by `Trainer` when `init_from` is given with
`model: {num_registers: N}`.
"""

from __future__ import annotations

import torch

from ..modeling.configuration_videoflextok import VideoFlexTokConfig
from ..modeling.modeling_videoflextok import VideoFlexTokModel

# the keys `init_from` may be combined with: everything else comes from the loaded model
GROWABLE_KEYS = {"num_registers"}


def grow_registers(model: VideoFlexTokModel, num_registers: int, generator: torch.Generator | None = None,
                   noise_std: float = 0.02) -> VideoFlexTokModel:
    """A copy of `model` with `num_registers` tokens per time step (>= its own); see the module docstring."""
    old = model.config.num_registers
    if not isinstance(num_registers, int) or num_registers < old:
        raise ValueError(f"num_registers={num_registers!r}: a grown model needs at least the {old} registers of the "
                         "model it starts from (an int).")
    if model.config.num_eval_registers is not None:
        raise ValueError("the model sets num_eval_registers; growing it would leave the new registers unused. "
                         "Start from a model without num_eval_registers.")
    config = VideoFlexTokConfig.from_dict({**model.config.to_dict(), "num_registers": num_registers})
    grown = VideoFlexTokModel(config)  # the config validates the register position tables
    state = {k: v.float() for k, v in model.state_dict().items()}
    registers = state["encoder.registers"]  # [frames, old, width]
    copies = registers[:, torch.arange(num_registers) % old]
    noise = torch.randn(copies.shape, generator=generator) * noise_std
    noise[:, :old] = 0.0
    state["encoder.registers"] = copies + noise
    grown.load_state_dict(state, strict=True)
    return grown.to(model.dtype)
