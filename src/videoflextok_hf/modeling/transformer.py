"""Transformer building blocks shared by the VideoFlexTok encoder and decoder.

Token layout. A chunk of `T` latent time steps becomes one sequence: for every time step its parts (by default
the `h*w` patch tokens in raster order, then the `N` register tokens), time steps one after another:
`[P_0, R_0, P_1, R_1, ...]`. Hidden states are kept as `[B, T, L_f, D]` (`L_f` tokens per time step) so that
per-part modulation broadcasts without materialising per-token tables; attention flattens them to
`[B, T * L_f, D]`.

Attention skips the work its masks forbid. Every mask mode is block-lower-triangular in time (a query of step t
never sees a later step), so [`build_attention_layout`] cuts the query rows into segments (one per part of a time
step, merged where equal) and gives each the key prefix it may see plus, only where that prefix is not fully
allowed, the slice of the boolean mask. The SDPA path then runs one unmasked (or small-masked) SDPA call per
segment: about 60 % of the dense score matrix at 5 time steps. Measured on a 2-core AMD EPYC (AVX2) at the mid
shape (B=8, 8 heads, 5 x 320 tokens), one attention call: dense bool-mask SDPA 0.33-0.35 s, segments 0.20-0.25 s,
`flex_attention` with a `BlockMask` under `torch.compile` 0.69 s (plus 19 s compile), hence segments.

The last block of a stack only needs the rows that are read out (the encoder's registers, the decoder's patches):
a layout built with `query_part` makes the other rows keys and values only, without their queries, attention
outputs and MLP. Same numbers; at the mid shape (B=4 / 8 sequences, 64 patches + 256 registers per step) the
encoder's last block takes 0.54 instead of 0.88 s and the decoder's 0.37 instead of 1.17 s (2-core AMD EPYC).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS


def layer_norm_fp32(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Parameter-free LayerNorm over the last dim, computed in float32 and cast back (mixed-precision safe)."""
    return F.layer_norm(x.float(), (x.shape[-1],), eps=eps).type_as(x)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1.0 + scale) + shift


# ------------------------------------------------------------------------------------------------------------------
# Attention masks


@lru_cache(maxsize=64)
def _attention_mask_cpu(
    mode: str,
    num_steps: int,
    tokens_per_step: int,
    prefix_len: int,
    cross_timestep: tuple[tuple[str, str], ...] | None,
) -> torch.Tensor:
    length = num_steps * tokens_per_step
    pos = torch.arange(length)
    q, k = pos[:, None], pos[None, :]
    if mode == "full":
        return torch.ones(length, length, dtype=torch.bool)
    if mode == "causal":
        return k <= q
    q_step, k_step = q // tokens_per_step, k // tokens_per_step
    if mode == "time_block_causal":
        return k_step <= q_step
    # `*_last` modes: inside a time step, the prefix part attends to the prefix part and the last part
    # attends causally (to the prefix and to earlier tokens of its own part).
    q_in, k_in = q % tokens_per_step, k % tokens_per_step
    same_step = (k_step == q_step) & ((k_in <= q_in) | (k_in < prefix_len))
    if mode == "time_block_causal_last":
        return same_step | (k_step < q_step)
    if mode != "flexible_time_block_causal_last":
        raise ValueError(f"unknown attention mask mode {mode!r}")
    rules = dict(cross_timestep)
    q_pre, k_pre = q_in < prefix_len, k_in < prefix_len
    earlier = k_step < q_step
    allowed = torch.zeros(length, length, dtype=torch.bool)
    if rules["prefix2prefix"] == "full":
        allowed |= q_pre & k_pre
    if rules["prefix2nonprefix"] == "full":
        allowed |= q_pre & ~k_pre
    if rules["nonprefix2prefix"] == "full":
        allowed |= ~q_pre & k_pre
    if rules["nonprefix2nonprefix"] == "full":
        allowed |= ~q_pre & ~k_pre
    elif rules["nonprefix2nonprefix"] == "causal":
        # register j of step t sees registers <= j of earlier steps
        allowed |= ~q_pre & ~k_pre & (k_in <= q_in)
    return same_step | (earlier & allowed)


def build_attention_mask(
    mode: str,
    num_steps: int,
    part_sizes: Sequence[int],
    cross_timestep: dict | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Boolean `[L, L]` mask (True = may attend) for one sample of the time-interleaved sequence.

    `part_sizes` are the token counts of the parts inside one time step, in sequence order; the last part is the
    "causal" one for the `*_last` modes and everything before it is the prefix.
    """
    cross = tuple(sorted(cross_timestep.items())) if cross_timestep else None
    mask = _attention_mask_cpu(mode, num_steps, sum(part_sizes), sum(part_sizes[:-1]), cross)
    return mask.to(device)


@dataclass(frozen=True)
class AttentionSegment:
    """Query rows `[query_start, query_end)` attend to keys `[0, key_end)`; `mask` (`[rows, key_end]`, True = may
    attend) is None where all of them are allowed."""

    query_start: int
    query_end: int
    key_end: int
    mask: torch.Tensor | None


@dataclass(frozen=True, eq=False)
class AttentionLayout:
    """The attention pattern of one sequence shape: the dense boolean `mask` `[L_q, L]` (for the eager path and
    other attention backends) and the `segments` that cover its rows with only the keys they may see.

    A layout built for one part of every time step (`query_part`) has queries for that part's rows only:
    `query_rows` is their range inside a time step and `query_index` their positions in the flattened sequence.
    A model's last block uses it for the part whose outputs are read (the encoder's registers, the decoder's
    patches): the other rows are still keys and values, but their queries, attention outputs and MLP would be
    thrown away."""

    mask: torch.Tensor
    segments: tuple[AttentionSegment, ...]
    query_rows: tuple[int, int] | None = None
    query_index: torch.Tensor | None = None


def _segments_of(mask: torch.Tensor, bounds: Sequence[int]) -> list[AttentionSegment]:
    """Cut the rows of a boolean mask at `bounds`; each piece sees keys up to its last allowed one."""
    allowed_keys = torch.arange(1, mask.shape[1] + 1)
    segments: list[AttentionSegment] = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        rows = mask[start:end]
        key_end = int((rows * allowed_keys).max())
        piece = rows[:, :key_end]
        dense = bool(piece.all())
        last = segments[-1] if segments else None
        if dense and last is not None and last.mask is None and last.key_end == key_end:
            segments[-1] = AttentionSegment(last.query_start, end, key_end, None)  # same keys: one call
        else:
            segments.append(AttentionSegment(start, end, key_end, None if dense else piece.contiguous()))
    return segments


@lru_cache(maxsize=64)
def _attention_layout(
    mode: str,
    num_steps: int,
    part_sizes: tuple[int, ...],
    cross: tuple[tuple[str, str], ...] | None,
    device: str,
    query_part: int | None,
) -> AttentionLayout:
    tokens_per_step = sum(part_sizes)
    mask = _attention_mask_cpu(mode, num_steps, tokens_per_step, sum(part_sizes[:-1]), cross)
    query_rows = query_index = None
    if query_part is None:
        bounds = [0]
        for _ in range(num_steps):
            for size in part_sizes:
                bounds.append(bounds[-1] + size)
    else:
        start = sum(part_sizes[:query_part])
        query_rows = (start, start + part_sizes[query_part])
        query_index = (torch.arange(num_steps)[:, None] * tokens_per_step + torch.arange(*query_rows)).reshape(-1)
        mask = mask[query_index]
        bounds = list(range(0, mask.shape[0] + 1, part_sizes[query_part]))  # one piece per time step
    segments = _segments_of(mask, bounds)
    device = torch.device(device)
    segments = tuple(
        AttentionSegment(s.query_start, s.query_end, s.key_end, None if s.mask is None else s.mask.to(device))
        for s in segments
    )
    return AttentionLayout(mask.to(device), segments, query_rows,
                           None if query_index is None else query_index.to(device))


def build_attention_layout(
    mode: str,
    num_steps: int,
    part_sizes: Sequence[int],
    cross_timestep: dict | None = None,
    device: torch.device | str = "cpu",
    query_part: int | None = None,
) -> AttentionLayout:
    """[`build_attention_mask`] plus the row segments that let attention skip forbidden key blocks; built once
    per (shape, device) and cached, so repeated forwards (the sampling loop) allocate and copy nothing. With
    `query_part` (an index into `part_sizes`), only that part's rows of every time step are queries (see
    [`AttentionLayout`])."""
    cross = tuple(sorted(cross_timestep.items())) if cross_timestep else None
    if query_part is not None and not 0 <= query_part < len(part_sizes):
        raise ValueError(f"query_part must index part_sizes {tuple(part_sizes)}, got {query_part}")
    return _attention_layout(mode, num_steps, tuple(part_sizes), cross, str(torch.device(device)), query_part)


# ------------------------------------------------------------------------------------------------------------------
# Attention

# On the CPU without autograd, attention and the MLP process about this many tokens at a time (whole sequences for
# attention, rows for the MLP): their large intermediates then exist for one pass only and stay in cache. Measured
# on the mid shape (2-core AMD EPYC): the guided B=4 decoder batch (8 sequences of 1600 tokens) detokenizes with a
# peak of +281 MiB instead of +715 MiB (weights resident), and the decoder step is no slower (medians of 5
# interleaved runs, B=8 / B=2 sequences: 7.62 / 2.04 s with 4096 tokens per pass, 7.10 / 1.84 s with 1024). On
# accelerators the whole batch runs at once: large kernels are what they are fast at.
INFERENCE_TOKENS_PER_PASS = 1024


def _in_passes(function, x: torch.Tensor, items_per_pass: int) -> torch.Tensor:
    """`function(x)` for a `function` that maps slices of dim 0 independently, computed on the CPU without autograd
    in slices of at most `items_per_pass` items (see `INFERENCE_TOKENS_PER_PASS`); otherwise, and when `x` fits in
    one pass, in one call."""
    if torch.is_grad_enabled() or x.device.type != "cpu" or x.shape[0] <= items_per_pass:
        return function(x)
    first = function(x[:items_per_pass])
    out = first.new_empty((x.shape[0], *first.shape[1:]))
    out[:items_per_pass] = first
    for start in range(items_per_pass, x.shape[0], items_per_pass):
        out[start : start + items_per_pass] = function(x[start : start + items_per_pass])
    return out


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference attention in plain torch ops; accepts the boolean masks this model uses."""
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, float("-inf"))
        else:
            scores = scores + attention_mask
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


class Attention(nn.Module):
    """Multi-head self-attention with optional per-head QK LayerNorm and the muP scale `8 / head_dim`
    (equal to `1 / sqrt(head_dim)` at head_dim 64). Dispatches to transformers' attention interface."""

    tokens_per_pass = INFERENCE_TOKENS_PER_PASS

    def __init__(self, config, dim: int, head_dim: int, qkv_bias: bool, proj_bias: bool, qk_norm: bool):
        super().__init__()
        self.config = config
        self.num_heads = dim // head_dim
        self.head_dim = head_dim
        self.scaling = 8.0 / head_dim
        self.qk_norm = qk_norm
        self.is_causal = False
        self.q_proj = Linear(dim, dim, bias=qkv_bias)
        self.k_proj = Linear(dim, dim, bias=qkv_bias)
        self.v_proj = Linear(dim, dim, bias=qkv_bias)
        self.o_proj = Linear(dim, dim, bias=proj_bias)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: AttentionLayout | torch.Tensor | None
    ) -> torch.Tensor:
        # a few sequences at a time: queries, keys, values and the per-segment outputs (five full-size tensors)
        # then exist for one pass only
        sequences = max(1, self.tokens_per_pass // hidden_states.shape[1])
        return _in_passes(lambda part: self._attend(part, attention_mask), hidden_states, sequences)

    def _attend(
        self, hidden_states: torch.Tensor, attention_mask: AttentionLayout | torch.Tensor | None
    ) -> torch.Tensor:
        """`[B, L, D]` -> `[B, L_q, D]`: all rows, or the query rows of a layout built for one part."""
        batch, length, dim = hidden_states.shape
        query_states = hidden_states
        if isinstance(attention_mask, AttentionLayout) and attention_mask.query_index is not None:
            query_states = hidden_states.index_select(1, attention_mask.query_index)
        queries = query_states.shape[1]
        query = self.q_proj(query_states).view(batch, queries, self.num_heads, self.head_dim).transpose(1, 2)
        shape = (batch, length, self.num_heads, self.head_dim)
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        if self.qk_norm:
            query, key = layer_norm_fp32(query), layer_norm_fp32(key)
        implementation = self.config._attn_implementation
        if isinstance(attention_mask, AttentionLayout):
            if implementation == "sdpa":
                output = self._segmented_sdpa(query, key, value, attention_mask.segments)
                return self.o_proj(output.reshape(batch, queries, dim))
            attention_mask = attention_mask.mask  # other backends get the dense mask
        attention_fn = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        output, _ = attention_fn(self, query, key, value, attention_mask, scaling=self.scaling, dropout=0.0)
        return self.o_proj(output.reshape(batch, queries, dim))

    def _segmented_sdpa(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, segments: Sequence[AttentionSegment]
    ) -> torch.Tensor:
        """One SDPA call per segment over its key prefix (transformers' interface takes one mask per call, so the
        loop lives here); returns `[B, L, heads, head_dim]`."""
        outputs = [
            F.scaled_dot_product_attention(
                query[:, :, s.query_start : s.query_end],
                key[:, :, : s.key_end],
                value[:, :, : s.key_end],
                attn_mask=s.mask,
                scale=self.scaling,
            ).transpose(1, 2)
            for s in segments
        ]
        return outputs[0].contiguous() if len(outputs) == 1 else torch.cat(outputs, dim=1)


# Without autograd, float32 linear layers on the CPU run as 1x1 convolutions, which PyTorch hands to oneDNN, instead
# of through `F.linear`, which calls MKL's sgemm. Measured on a 2-core AMD EPYC (AVX-512) at the transformer's shapes
# (1024-1600 rows, 512 -> 512 / 1368, 1368 -> 512): 166-186 GFLOPS against 113-156 for `F.linear`; MKL does not run
# its fastest kernels on AMD CPUs. Small GEMMs stay on `F.linear`, which was faster there (256 rows, 64 -> 64: 111 vs
# 79 GFLOPS), hence `ONEDNN_LINEAR_MIN_ROWS`; so does one thread, where PyTorch does not pick oneDNN for a 1x1
# convolution of one image (it falls back to `thnn_conv2d`). The sums are the same products in
# another order: outputs differ from `F.linear` by float32 rounding (about 1e-6 relative). Set `ONEDNN_LINEAR = False`
# for `F.linear` everywhere.
ONEDNN_LINEAR = True
ONEDNN_LINEAR_MIN_ROWS = 512


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)`; on the CPU in float32 without autograd, for at least `ONEDNN_LINEAR_MIN_ROWS`
    rows, computed by oneDNN as a 1x1 convolution (see `ONEDNN_LINEAR`)."""
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if (
        not ONEDNN_LINEAR
        or torch.is_grad_enabled()
        or x.device.type != "cpu"
        or x.dtype != torch.float32
        or weight.dtype != torch.float32
        or rows < ONEDNN_LINEAR_MIN_ROWS
        or torch.get_num_threads() < 2
    ):
        return F.linear(x, weight, bias)
    features, outputs = x.shape[-1], weight.shape[0]
    # [rows, in] row-major is a channels-last [1, in, rows, 1] image: a view, and oneDNN's output comes back in the
    # same layout, so [rows, out] is a view of it too
    image = x.reshape(rows, features).view(1, rows, 1, features).permute(0, 3, 1, 2)
    out = F.conv2d(image, weight[:, :, None, None], bias)
    return out.permute(0, 2, 3, 1).reshape(*x.shape[:-1], outputs)


class Linear(nn.Linear):
    """`nn.Linear` (stored exactly like it) whose forward is [`linear`]. Its forward can also append zero output
    units (`output_padding`) or accept inputs with that many extra columns (`input_padding`, zero weight columns for
    them). The padded weights are built inside this module's own forward, so hooks that load weights per module
    (accelerate's sequential offload) see them; they are a copy made per call, so no second set of weights is
    kept."""

    def forward(self, x: torch.Tensor, output_padding: int = 0, input_padding: int = 0) -> torch.Tensor:
        if not (output_padding or input_padding):
            return linear(x, self.weight, self.bias)
        weight = F.pad(self.weight, (0, input_padding, 0, output_padding))
        bias = None if self.bias is None else F.pad(self.bias, (0, output_padding))
        return linear(x, weight, bias)


class FeedForward(nn.Module):
    """SwiGLU (`down(silu(gate(x)) * up(x))`, hidden width `int(2 * int(dim * ratio) / 3)`) or a plain SiLU MLP.

    Without autograd the hidden width is padded with zero units to a multiple of 8: MKL's sgemm runs about 1.5x
    slower when the output row length is not a multiple of 8, and the official widths are not (1365 at width 512,
    4778 at the released decoder's 1792). Measured on a 2-core AMD EPYC at 12800 x 512 -> 1365: 171 ms plain vs
    112 ms padded; the mid-shape decoder step 1.26x faster. The padded units are exactly zero through SiLU, the
    product and the zero columns of `down`, so the output is unchanged (bit-identical there). Training keeps the
    plain width: the padded weight copies would be saved for backward. (Those figures are MKL's; passes of 512 rows
    or more now run through oneDNN (`linear`), where 1365 and 1368 measured the same within noise; the padding is
    kept for the smaller passes.)

    On the CPU without autograd the tokens also go through in passes of at most `tokens_per_pass` rows
    (`INFERENCE_TOKENS_PER_PASS`), so the two hidden activations (2.7x the width each) exist for one pass only. Rows
    are independent, so the output is the same up to float rounding.
    """

    tokens_per_pass = INFERENCE_TOKENS_PER_PASS

    def __init__(self, dim: int, mlp_ratio: float, gated: bool, bias: bool):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.gated = gated
        if gated:
            hidden = int(2 * hidden / 3)
            self.up_proj = Linear(dim, hidden, bias=bias)
        self.gate_proj = Linear(dim, hidden, bias=bias)
        self.down_proj = Linear(hidden, dim, bias=bias)
        self.hidden_padding = -hidden % 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self._mlp(x, padding=0)
        rows = x.reshape(-1, x.shape[-1])
        return _in_passes(lambda part: self._mlp(part, self.hidden_padding), rows, self.tokens_per_pass).view_as(x)

    def _mlp(self, x: torch.Tensor, padding: int) -> torch.Tensor:
        hidden = F.silu(self.gate_proj(x, output_padding=padding))
        if self.gated:
            hidden = hidden * self.up_proj(x, output_padding=padding)
        return self.down_proj(hidden, input_padding=padding)


class TransformerBlock(GradientCheckpointingLayer):
    """Pre-LN block (parameter-free LayerNorms). With `modulation` it is the adaLN-zero block of the decoder.

    `hidden_states` is `[B, T, L_f, D]`. `modulation`, if given, is `[B, 1, L_f, 6 * D]` (one row per token
    position inside a time step, broadcast over time) holding gate_msa, gate_mlp, shift_msa, scale_msa,
    shift_mlp, scale_mlp in that order.
    """

    def __init__(self, config, dim, head_dim, mlp_ratio, gated_mlp, qk_norm, qkv_bias, proj_bias, mlp_bias):
        super().__init__()
        self.attn = Attention(config, dim, head_dim, qkv_bias, proj_bias, qk_norm)
        self.mlp = FeedForward(dim, mlp_ratio, gated_mlp, mlp_bias)

    def _attend(self, x: torch.Tensor, attention_mask: AttentionLayout | torch.Tensor | None) -> torch.Tensor:
        batch, steps, per_step, dim = x.shape
        return self.attn(x.reshape(batch, steps * per_step, dim), attention_mask).view(batch, steps, -1, dim)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: AttentionLayout | torch.Tensor | None,
        modulation: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`[B, T, L_f, D]` -> the same, or only the query rows `[B, T, L_q, D]` of a layout built for one part."""
        x = hidden_states
        rows = attention_mask.query_rows if isinstance(attention_mask, AttentionLayout) else None
        keep = slice(None) if rows is None else slice(*rows)
        if modulation is None:
            x = x[:, :, keep] + self._attend(layer_norm_fp32(x), attention_mask)
            return x + self.mlp(layer_norm_fp32(x))
        gate_msa, gate_mlp, shift_msa, scale_msa, shift_mlp, scale_mlp = modulation.chunk(6, dim=-1)
        attended = self._attend(modulate(layer_norm_fp32(x), shift_msa, scale_msa), attention_mask)
        x = x[:, :, keep] + gate_msa[:, :, keep] * attended
        return x + gate_mlp[:, :, keep] * self.mlp(modulate(layer_norm_fp32(x), shift_mlp[:, :, keep],
                                                            scale_mlp[:, :, keep]))


# ------------------------------------------------------------------------------------------------------------------
# Embeddings


class PositionEmbedding(nn.Module):
    """Absolute position embedding over an n-D grid, returned channels-last `[*sizes, D]`.

    `learnable_sum` / `learnable_prod`: one learned table per axis (`weight [n_dims, max_size, D]`), combined by
    broadcasting sum or product. `sincos`: a fixed 2-D table (`weight [D, max_h, max_w]`) loaded from the
    checkpoint (the official code builds it with its axes swapped, so it is stored rather than recomputed).
    `scaling="absolute"` crops the table to the grid; `"interpolate"` (2-D) resizes it bilinearly.
    """

    def __init__(self, dim: int, kind: str, max_sizes: Sequence[int], scaling: str = "absolute"):
        super().__init__()
        self.kind, self.scaling = kind, scaling
        self.max_sizes = tuple(max_sizes)
        if kind == "sincos":
            self.weight = nn.Parameter(sincos_2d_table(dim, *self.max_sizes), requires_grad=False)
        else:
            self.weight = nn.Parameter(torch.zeros(len(self.max_sizes), self.max_sizes[0], dim))

    def _table(self, sizes: Sequence[int]) -> torch.Tensor:
        """`[D, *sizes]` for `sizes <= max_sizes`, combined in the same operation order as the official implementation.

        Each axis table is cropped before combining: the official code builds the whole `[D, *max_sizes]` table and
        crops it, which for the released decoder's register table (256 x 256 x 512) is a 128 MiB temporary per
        forward; the cropped elements are the same sums / products, so the result is bit-identical."""
        if self.kind == "sincos":
            return self.weight[(slice(None),) + tuple(slice(0, size) for size in sizes)]
        tables = [self.weight[axis, :size].transpose(0, 1) for axis, size in enumerate(sizes)]  # [D, size] each
        combine = torch.mul if self.kind == "learnable_prod" else torch.add
        if len(sizes) == 1:
            return tables[0]
        if len(sizes) == 2:
            return combine(tables[0][:, :, None], tables[1][:, None, :])
        if len(sizes) == 3:
            height_width = combine(tables[1][:, :, None], tables[2][:, None, :])
            return combine(height_width[:, None], tables[0][:, :, None, None])
        raise ValueError(f"position embeddings support 1 to 3 axes, got {len(sizes)}")

    def _full_table(self) -> torch.Tensor:
        """`[D, *max_sizes]`."""
        return self._table(self.max_sizes)

    def forward(self, sizes: Sequence[int]) -> torch.Tensor:
        if len(sizes) != len(self.max_sizes):
            raise ValueError(f"position embedding has {len(self.max_sizes)} axes, got grid {tuple(sizes)}")
        if self.scaling == "interpolate":
            table = F.interpolate(self._full_table()[None], size=tuple(sizes), mode="bilinear", align_corners=True)[0]
        else:
            if any(size > limit for size, limit in zip(sizes, self.max_sizes)):
                raise ValueError(
                    f"grid {tuple(sizes)} exceeds the position embedding's maximum sizes {self.max_sizes}; "
                    "use a smaller video or a model configured for larger inputs."
                )
            table = self._table(sizes)
        return table.permute(*range(1, table.dim()), 0)


def sincos_2d_table(dim: int, height: int, width: int, temperature: float = 10000.0) -> torch.Tensor:
    """MoCo-v3 2-D sin-cos table `[D, H, W]` laid out like the official one (grid built (w, h), read as (h, w))."""
    if dim % 4:
        raise ValueError(f"sin-cos position embeddings need a width divisible by 4, got {dim}")
    grid_w, grid_h = torch.meshgrid(
        torch.arange(width, dtype=torch.float32), torch.arange(height, dtype=torch.float32), indexing="ij"
    )
    omega = 1.0 / temperature ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    out_w = grid_w.reshape(-1)[:, None] * omega[None]
    out_h = grid_h.reshape(-1)[:, None] * omega[None]
    table = torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)
    return table.reshape(height, width, dim).permute(2, 0, 1).contiguous()


class PatchEmbed3D(nn.Module):
    """Channels-last latents `[B, T, H, W, C]` -> patch tokens `[B, T/pt, H/ph, W/pw, D]`.

    A patch is flattened in (pt, ph, pw, C) order (C fastest) before the linear projection.
    """

    def __init__(self, in_channels: int, dim: int, patch_size: Sequence[int]):
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.proj = Linear(in_channels * math.prod(self.patch_size), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(patchify(x, self.patch_size))


def patchify(x: torch.Tensor, patch_size: Sequence[int]) -> torch.Tensor:
    batch, steps, height, width, channels = x.shape
    pt, ph, pw = patch_size
    x = x.reshape(batch, steps // pt, pt, height // ph, ph, width // pw, pw, channels)
    x = x.permute(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(batch, steps // pt, height // ph, width // pw, pt * ph * pw * channels)


def unpatchify(x: torch.Tensor, patch_size: Sequence[int], channels: int) -> torch.Tensor:
    """Inverse of `patchify`: `[B, T', H', W', pt*ph*pw*C]` -> `[B, T'pt, H'ph, W'pw, C]`."""
    batch, steps, height, width, _ = x.shape
    pt, ph, pw = patch_size
    x = x.reshape(batch, steps, height, width, pt, ph, pw, channels)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(batch, steps * pt, height * ph, width * pw, channels)


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of the flow time t (cos first; `max_period` 256 in the official models; the argument
    is scaled by `1000 / max_timestep`) followed by Linear -> SiLU -> Linear."""

    def __init__(self, dim: int, frequency_size: int, max_period: float, max_timestep: float):
        super().__init__()
        self.frequency_size = frequency_size
        self.max_period = max_period
        self.max_timestep = max_timestep
        self.linear_1 = Linear(frequency_size, dim)
        self.linear_2 = Linear(dim, dim)

    def sinusoidal_features(self, timesteps: torch.Tensor) -> torch.Tensor:
        half = self.frequency_size // 2
        exponent = -math.log(self.max_period) * torch.arange(half, dtype=torch.float32) / half
        freqs = ((1000.0 / self.max_timestep) * torch.exp(exponent)).to(timesteps.device)
        args = timesteps[:, None].float() * freqs[None]
        features = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if self.frequency_size % 2:
            features = torch.cat([features, torch.zeros_like(features[:, :1])], dim=-1)
        return features

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        features = self.sinusoidal_features(timesteps).to(self.linear_1.weight.dtype)
        return self.linear_2(F.silu(self.linear_1(features)))
