"""Segmented attention (only the key blocks a mask allows) against dense masked attention, for every mask mode."""

import pytest
import torch
from helpers import randomize_, tiny_config

from videoflextok_hf import VideoFlexTokModel

from videoflextok_hf.modeling.configuration_videoflextok import ATTENTION_MASK_MODES, VideoFlexTokConfig
from videoflextok_hf.modeling.transformer import Attention, build_attention_layout, build_attention_mask

CROSS = {"prefix2prefix": "full", "prefix2nonprefix": "none", "nonprefix2prefix": "full", "nonprefix2nonprefix": "causal"}


def _attention(implementation: str) -> Attention:
    config = VideoFlexTokConfig()
    config._attn_implementation = implementation
    torch.manual_seed(0)
    return Attention(config, dim=32, head_dim=8, qkv_bias=True, proj_bias=True, qk_norm=True).eval()


@pytest.mark.parametrize("mode", ATTENTION_MASK_MODES)
@pytest.mark.parametrize("part_sizes", [(4, 6), (6, 4), (5,)])
@torch.no_grad()
def test_segmented_sdpa_matches_dense_mask(mode, part_sizes):
    cross = CROSS if mode == "flexible_time_block_causal_last" else None
    layout = build_attention_layout(mode, 4, part_sizes, cross)
    dense = build_attention_mask(mode, 4, part_sizes, cross)
    assert torch.equal(layout.mask, dense)
    # the segments cover every query row once, in order, and never cut off an allowed key
    rows = [row for s in layout.segments for row in range(s.query_start, s.query_end)]
    assert rows == list(range(dense.shape[0]))
    for s in layout.segments:
        assert not dense[s.query_start : s.query_end, s.key_end :].any()
        expected = dense[s.query_start : s.query_end, : s.key_end]
        assert torch.equal(expected, s.mask) if s.mask is not None else bool(expected.all())
    hidden = torch.randn(3, dense.shape[0], 32)
    sdpa, eager = _attention("sdpa"), _attention("eager")
    reference = eager(hidden, dense)
    assert (sdpa(hidden, layout) - reference).abs().max() <= 1e-6
    assert (eager(hidden, layout) - reference).abs().max() <= 1e-6  # other backends use the dense mask


@pytest.mark.parametrize("mode", ATTENTION_MASK_MODES)
@pytest.mark.parametrize("part_sizes, query_part", [((4, 6), 0), ((4, 6), 1), ((6, 3, 4), 1), ((5,), 0)])
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("modulated", [False, True])
@torch.no_grad()
def test_block_with_a_query_part_layout_returns_exactly_those_rows(mode, part_sizes, query_part, implementation,
                                                                  modulated):
    """The last block of the encoder (registers) and decoder (patches) computes only the rows that are read out;
    they must be the rows the full block computes, and they must still see every key the mask allows."""
    from videoflextok_hf.modeling.transformer import TransformerBlock

    cross = CROSS if mode == "flexible_time_block_causal_last" else None
    steps, per_step, dim = 3, sum(part_sizes), 32
    full = build_attention_layout(mode, steps, part_sizes, cross)
    part = build_attention_layout(mode, steps, part_sizes, cross, query_part=query_part)
    start = sum(part_sizes[:query_part])
    rows = slice(start, start + part_sizes[query_part])
    assert part.query_rows == (rows.start, rows.stop)
    flat_rows = torch.arange(steps * per_step).view(steps, per_step)[:, rows].reshape(-1)
    assert torch.equal(part.query_index, flat_rows) and torch.equal(part.mask, full.mask[flat_rows])
    config = VideoFlexTokConfig()
    config._attn_implementation = implementation
    torch.manual_seed(0)
    block = TransformerBlock(config, dim, 8, 2.0, True, True, True, True, True).eval()
    randomize_(block)
    hidden = torch.randn(2, steps, per_step, dim)
    modulation = torch.randn(2, 1, per_step, 6 * dim) if modulated else None
    expected = block(hidden, full, modulation)[:, :, rows]
    got = block(hidden, part, modulation)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="query_part"):
        build_attention_layout(mode, steps, part_sizes, cross, query_part=len(part_sizes))


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_attention_in_passes_of_sequences_matches_one_pass(implementation, monkeypatch):
    """Without autograd, attention runs a few sequences at a time (`tokens_per_pass`); the training path runs the
    whole batch at once. Both must give the same numbers."""
    layout = build_attention_layout("time_block_causal_last", 4, (4, 6), None)
    attention = _attention(implementation)
    hidden = torch.randn(5, 40, 32)
    with torch.enable_grad():
        expected = attention(hidden, layout).detach()
    calls = []
    real_attend = Attention._attend

    def counting_attend(self, states, mask):
        calls.append(states.shape[0])
        return real_attend(self, states, mask)

    monkeypatch.setattr(Attention, "_attend", counting_attend)
    monkeypatch.setattr(Attention, "tokens_per_pass", 80)  # 2 sequences of 40 tokens per pass
    with torch.no_grad():
        passed = attention(hidden, layout)
    assert calls == [2, 2, 1]
    torch.testing.assert_close(passed, expected, rtol=0, atol=1e-6)


def test_layouts_skip_future_blocks_and_are_cached():
    layout = build_attention_layout("time_block_causal", 5, [64, 256])
    assert len(layout.segments) == 5 and all(s.mask is None for s in layout.segments)
    computed = sum((s.query_end - s.query_start) * s.key_end for s in layout.segments)
    assert computed / layout.mask.numel() == pytest.approx(15 / 25)  # 1 + 2 + ... + 5 of 5 x 5 blocks
    registers_causal = build_attention_layout("time_block_causal_last", 5, [64, 256])
    assert [s.mask is None for s in registers_causal.segments] == [True, False] * 5
    assert build_attention_layout("time_block_causal", 5, (64, 256)) is layout


@torch.no_grad()
def test_compile_blocks_keeps_the_numbers():
    model = randomize_(VideoFlexTokModel(tiny_config())).eval()
    latents = torch.randn(2, model.config.vae_latent_channels, 5, 4, 4)
    ids = torch.randint(0, model.quantizer.codebook_size, (2, 5, model.config.num_registers))
    videos = torch.rand(1, 3, 17, 32, 32) * 2 - 1
    eager_velocity, eager_ids = model.predict_velocity(latents, 0.7, ids), model.encode(videos).token_ids
    assert model.compile_blocks() is model
    assert all(hasattr(block, "_compiled_call_impl") for block in model.decoder.blocks)
    assert (model.predict_velocity(latents, 0.7, ids) - eager_velocity).abs().max() <= 1e-5
    assert torch.equal(model.encode(videos).token_ids, eager_ids)


@pytest.mark.parametrize("kind", ["learnable_sum", "learnable_prod"])
@pytest.mark.parametrize("sizes", [(5, 7), (3, 4, 6), (16, 16), (2, 16, 1)])
def test_position_table_is_built_cropped_and_equals_the_cropped_full_table(kind, sizes):
    """The table for a grid is combined from cropped axis tables (no [D, *max_sizes] temporary); it must be exactly
    the full table cropped, which is how the official code computes it."""
    from videoflextok_hf.modeling.transformer import PositionEmbedding

    embedding = PositionEmbedding(24, kind, [16] * len(sizes))
    with torch.no_grad():
        embedding.weight.normal_(generator=torch.Generator().manual_seed(0))
    full = embedding._full_table()
    assert full.shape == (24, *[16] * len(sizes))
    expected = full[(slice(None),) + tuple(slice(0, s) for s in sizes)].permute(*range(1, len(sizes) + 1), 0)
    assert torch.equal(embedding(sizes), expected)
    with pytest.raises(ValueError, match="exceeds"):
        embedding((17,) + tuple(sizes[1:]))


@pytest.mark.parametrize("dim, gated, bias", [(32, True, False), (40, True, True), (31, False, True)])
@pytest.mark.parametrize("tokens_per_pass", [4096, 5])
def test_feed_forward_pads_its_hidden_width_without_changing_the_output(dim, gated, bias, tokens_per_pass, monkeypatch):
    """Inference runs the MLP at a hidden width padded to a multiple of 8 (zero units; MKL's sgemm is much slower
    on odd output widths), in passes of at most `tokens_per_pass` tokens; the training path keeps the plain width and
    one pass. Both must give the same numbers."""
    import torch.nn.functional as F

    from videoflextok_hf.modeling.transformer import FeedForward

    torch.manual_seed(0)
    mlp = FeedForward(dim, 4.0, gated, bias)
    hidden = mlp.gate_proj.out_features
    assert hidden % 8 and mlp.hidden_padding == -hidden % 8
    with torch.no_grad():  # zero-initialised biases would hide a wrongly padded bias
        for parameter in mlp.parameters():
            parameter.normal_()
    x = torch.randn(3, 7, dim)
    with torch.enable_grad():
        expected = mlp(x)
        expected.sum().backward()  # the training path is differentiable
    widths = []
    real_linear = F.linear

    def recording_linear(input, weight, bias=None):
        widths.append(weight.shape[0])
        return real_linear(input, weight, bias)

    monkeypatch.setattr(F, "linear", recording_linear)
    monkeypatch.setattr(FeedForward, "tokens_per_pass", tokens_per_pass)
    with torch.no_grad():
        padded = mlp(x)
    assert widths[0] == hidden + mlp.hidden_padding  # the padded path ran
    passes = -(-x.shape[0] * x.shape[1] // tokens_per_pass)  # 21 rows: one pass, or five of at most 5 rows
    assert len(widths) == passes * (3 if gated else 2)
    # float rounding only (GEMM kernels differ with the row count): 1e-6 of the output's scale
    scale = float(expected.detach().abs().max())
    torch.testing.assert_close(padded, expected.detach(), rtol=0, atol=1e-6 * scale)


@pytest.mark.parametrize("shape, features, outputs, bias", [((600, 48), 48, 40, True), ((3, 250, 32), 32, 64, False)])
def test_linear_runs_through_onednn_without_autograd_and_matches_f_linear(shape, features, outputs, bias, monkeypatch):
    """Inference-time CPU linears of at least `ONEDNN_LINEAR_MIN_ROWS` rows run as oneDNN 1x1 convolutions (MKL's
    sgemm is slower on AMD CPUs); they must give `F.linear`'s numbers up to float32 rounding, in the same shape.
    With autograd, below the row threshold, or switched off, it is `F.linear` itself (bit-identical)."""
    import torch.nn.functional as F

    from videoflextok_hf.modeling import transformer
    from videoflextok_hf.modeling.transformer import Linear

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # the route needs >= 2 threads (see `linear`)
    torch.manual_seed(0)
    layer = Linear(features, outputs, bias=bias)
    x = torch.randn(*shape)
    expected = F.linear(x, layer.weight, layer.bias).detach()

    def convolutions(fn):
        with torch.profiler.profile() as prof:
            out = fn()
        return out, sum(event.name == "aten::convolution" for event in prof.events())

    with torch.no_grad():
        out, calls = convolutions(lambda: layer(x))
    assert calls == 1 and out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6 * float(expected.abs().max()))
    strided = x.transpose(-1, -2).contiguous().transpose(-1, -2)  # the same values, features not contiguous
    assert not strided.is_contiguous()
    with torch.no_grad():  # a non-contiguous input too
        out_t, _ = convolutions(lambda: layer(strided))
    torch.testing.assert_close(out_t, expected, rtol=0, atol=1e-6 * float(expected.abs().max()))

    trained, calls = convolutions(lambda: layer(x))  # autograd: F.linear, differentiable
    assert calls == 0 and torch.equal(trained, expected)
    trained.sum().backward()
    assert layer.weight.grad is not None
    with torch.no_grad():
        few, calls = convolutions(lambda: layer(x.reshape(-1, features)[: transformer.ONEDNN_LINEAR_MIN_ROWS - 1]))
        assert calls == 0 and torch.equal(few, expected.reshape(-1, outputs)[: transformer.ONEDNN_LINEAR_MIN_ROWS - 1])
        monkeypatch.setattr(transformer, "ONEDNN_LINEAR", False)
        off, calls = convolutions(lambda: layer(x))
        assert calls == 0 and torch.equal(off, expected)
