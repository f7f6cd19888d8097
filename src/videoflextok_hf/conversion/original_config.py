"""Read an official VideoFlexTok hub config (hydra tree) into a `VideoFlexTokConfig` plus a weight-key plan.

The official model is a chain of data-dict modules whose wiring lives in `config.json`: each module reads and
writes named entries, and `module_dict` order is execution order. Nothing is assumed here: the parser follows
the data flow (which module produces what the next one reads), reads every architecture value from the modules
and rejects anything it cannot reproduce exactly, naming the module and the field. No `_target_` is ever
imported or evaluated; they are only compared with the official allow-list.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..modeling.chunking import ChunkGeometry

logger = logging.getLogger(__name__)

# The official loader's allow-list (videoflextok/utils/checkpoint.py); any other `_target_` is rejected.
ALLOWED_TARGETS = frozenset(
    {
        "videoflextok.wrappers.VideoFlexTok",
        "videoflextok.flow_matching.pipelines.VideoMinRFPipeline",
        "videoflextok.flow_matching.noise_modules.PrefixMinRFNoiseModule",
        "videoflextok.flow_matching.noise_modules.MinRFNoiseModule",
        "videoflextok.resamplers.video_wrappers.VideoFlowMatchingResampler",
        "videoflextok.compressors.vidtok.VidTokVAE",
        "videoflextok.model.utils.wrappers.SequentialModuleDictWrapper",
        "videoflextok.model.utils.posembs.PositionalEmbeddingAdder",
        "videoflextok.model.utils.dict_ops.PerSampleOp",
        "videoflextok.model.utils.dict_ops.channels_first_to_last",
        "videoflextok.model.utils.dict_ops.channels_last_to_first",
        "videoflextok.model.trunks.transformers.FlexTransformer",
        "videoflextok.model.preprocessors.token_dropout.MaskedNestedDropout",
        "videoflextok.model.preprocessors.token_dropout.MaskedPrefixDropout",
        "videoflextok.model.preprocessors.time_embedding.TimestepEmbedder",
        "videoflextok.model.preprocessors.registers.RegistersTemporal2D",
        "videoflextok.model.preprocessors.patching.PatchEmbedder",
        "videoflextok.model.preprocessors.nullcond.LearnedNullCond",
        "videoflextok.model.preprocessors.linear.LinearLayer",
        "videoflextok.model.preprocessors.flex_seq_packing.BlockWiseSequenceInterleavePacker",
        "videoflextok.model.postprocessors.seq_unpacking.SequenceInterleavedUnpacker",
        "videoflextok.model.postprocessors.heads.LinearHead",
        "videoflextok.model.postprocessors.heads.TransformerHead",
        "videoflextok.model.postprocessors.heads.ToPatchesLinearHead",
        "videoflextok.regularizers.quantize_fsq.FSQ",
    }
)

ORIGINAL_PREFIX = "video_tokenizer."
STANDARD_VAE_ID = "vidtok_kl_causal_488_16chn"
# The packaged VidTok yaml of the official code (`vidtok_kl_causal_488_16chn`).
STANDARD_VAE = {
    "base_channels": 128,
    "channel_multipliers": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "latent_channels": 16,
    "in_channels": 3,
    "out_channels": 3,
    "temporal_downsample_factor": 4,
}


class OriginalCheckpointError(ValueError):
    """An official checkpoint or config that cannot be converted exactly."""


# Accepted constructor arguments per official class (anything else would not even build in the official code).
_KNOWN_ARGS = {
    "PerSampleOp": {"read_key", "write_key", "per_sample_op"},
    "PatchEmbedder": {
        "input_tensor_list_read_key", "patches_list_write_key", "n_patches_write_key", "patch_sizes", "channels_in",
        "dim", "flatten_patches", "weight_init_style",
    },
    "PositionalEmbeddingAdder": {
        "read_key", "write_key", "dim", "max_sizes", "posemb_type", "posemb_scaling", "posemb_write_key",
    },
    "RegistersTemporal2D": {
        "input_tensor_list_read_key", "register_sizes_read_write_key", "registers_write_key", "dim", "t_max",
        "n_min", "n_max", "n_eval", "size_sampling_mode", "ordering_mode", "extra_registers_write_key",
        "extra_registers_dim",
    },
    "BlockWiseSequenceInterleavePacker": {
        "input_list_read_keys", "packed_seq_write_key", "block_mask_write_key", "inner_packed_shapes_write_key",
        "outer_packed_shapes_write_key", "mask_mode", "max_seq_len", "pad_to_multiple", "emb_packing_fn_write_key",
        "per_subseq_embs", "compile_block_mask", "cross_timestep_attention_config", "repa_block_mask_write_key",
        "repa_mask_mode", "repa_patch_index",
    },
    "FlexTransformer": {
        "input_seq_read_key", "output_seq_write_key", "dim", "depth", "head_dim", "mlp_ratio", "qkv_bias",
        "proj_bias", "mlp_bias", "drop", "drop_path_rate", "act_layer", "norm_layer", "gated_mlp", "qk_norm",
        "use_act_checkpoint", "weight_init_style", "zero_init_query_proj", "block_mask_read_key",
        "score_mod_read_key", "adaLN_emb_read_key", "adaLN_packing_fn_read_key", "adaLN_expansion",
        "rope_forward_read_key", "intermediate_layer_write_key", "intermediate_layers",
    },
    "SequenceInterleavedUnpacker": {
        "packed_seq_read_key", "inner_seq_write_keys", "inner_packed_shapes_read_key", "outer_packed_shapes_read_key",
    },
    "LinearHead": {
        "read_key", "write_key", "dim", "dim_out", "use_mup_readout", "weight_init_style", "norm_layer",
        "dtype_override", "adaLN_emb_read_key", "adaLN_packing_fn_read_key", "adaLN_bias", "proj_bias",
    },
    "ToPatchesLinearHead": {
        "read_key", "write_key", "dim", "channels_out", "patch_sizes", "use_mup_readout", "weight_init_style",
        "norm_layer", "dtype_override", "adaLN_emb_read_key", "adaLN_packing_fn_read_key", "adaLN_bias", "proj_bias",
    },
    "LinearLayer": {"read_key", "write_key", "dim_in", "dim", "weight_init_style", "dtype_override", "proj_bias"},
    "MaskedNestedDropout": {
        "read_write_key", "dim", "eval_keep_k_read_key", "train_keep_k_write_key", "size_sampling_mode", "zipf_a",
    },
    "MaskedPrefixDropout": {"read_write_key", "dim", "prefix_len_read_key", "eval_prefix_len_read_key"},
    "LearnedNullCond": {"read_write_key", "dim", "eval_drop_flag_read_key", "dropout_prob", "replace_with_single_token"},
    "TimestepEmbedder": {
        "timesteps_read_key", "time_embedding_write_key", "dim", "frequency_embedding_size", "weight_init_style",
        "max_timestep", "temb_as_tokens",
    },
    "FSQ": {
        "latents_read_key", "quants_write_key", "tokens_write_key", "levels", "drop_quant_p", "corrupt_tokens_p",
        "min_corrupt_tokens_p", "apply_corrupt_tokens_p", "packed_call",
    },
    "VidTokVAE": {
        "images_read_key", "vae_latents_read_key", "vae_latents_write_key", "images_reconst_write_key", "tokenizer_id",
        "compile", "chunk_size", "force_vae_encode",
    },
    "PrefixMinRFNoiseModule": {
        "clean_images_read_key", "noised_images_write_key", "timesteps_write_key", "sigmas_write_key", "prefix_len",
        "keep_prefix_prob", "ln", "stratisfied", "mode_scale", "noise_write_key", "noise_read_key",
        "loss_mask_write_key", "prefix_len_write_key", "cond_sigma_range", "cond_noise_prob",
    },
    "MinRFNoiseModule": {
        "clean_images_read_key", "noised_images_write_key", "timesteps_write_key", "sigmas_write_key", "ln",
        "stratisfied", "mode_scale", "noise_write_key", "noise_read_key",
    },
    "VideoMinRFPipeline": {
        "noise_read_key", "target_sizes_read_key", "latents_read_key", "timesteps_read_key", "noised_videos_read_key",
        "reconst_write_key", "out_channels", "zero_noise", "cond_vae_latents_key",
    },
    "SequentialModuleDictWrapper": {"module_dict"},
}

# Default values of the official constructors for the arguments that change the computation.
_HEAD_DEFAULTS = {
    "weight_init_style": "zero", "norm_layer": "default", "dtype_override": None, "adaLN_emb_read_key": None,
    "adaLN_packing_fn_read_key": None, "adaLN_bias": True, "proj_bias": True,
}
_DEFAULTS = {
    "PositionalEmbeddingAdder": {"posemb_type": "sincos", "posemb_scaling": "absolute"},
    "PatchEmbedder": {"flatten_patches": True, "dim": None},
    "RegistersTemporal2D": {"n_eval": None, "ordering_mode": "nested", "extra_registers_write_key": None},
    "BlockWiseSequenceInterleavePacker": {
        "mask_mode": "full", "emb_packing_fn_write_key": None, "per_subseq_embs": False,
        "cross_timestep_attention_config": None, "repa_block_mask_write_key": None,
    },
    "FlexTransformer": {
        "dim": 768, "depth": 12, "head_dim": 64, "mlp_ratio": 4.0, "qkv_bias": False, "proj_bias": False,
        "mlp_bias": False, "drop": 0.0, "drop_path_rate": 0.0, "gated_mlp": True, "qk_norm": True,
        "block_mask_read_key": None, "score_mod_read_key": None, "adaLN_emb_read_key": None,
        "adaLN_packing_fn_read_key": None, "adaLN_expansion": 1, "rope_forward_read_key": None,
        "intermediate_layer_write_key": None, "intermediate_layers": [],
    },
    "LinearHead": _HEAD_DEFAULTS,
    "ToPatchesLinearHead": _HEAD_DEFAULTS,
    "LinearLayer": {"dtype_override": None, "proj_bias": True},
    "MaskedNestedDropout": {"eval_keep_k_read_key": "eval_keep_k", "size_sampling_mode": "uniform"},
    "MaskedPrefixDropout": {"eval_prefix_len_read_key": "eval_prefix_len"},
    "LearnedNullCond": {"eval_drop_flag_read_key": "eval_dropout_mask", "dropout_prob": 0.0,
                        "replace_with_single_token": False},
    "TimestepEmbedder": {"frequency_embedding_size": 256, "max_timestep": 1000.0, "temb_as_tokens": False},
    "FSQ": {"drop_quant_p": 0.0, "corrupt_tokens_p": 0.0},
    "PrefixMinRFNoiseModule": {"prefix_len": None, "keep_prefix_prob": None, "ln": True, "stratisfied": False,
                               "mode_scale": 0.0, "noise_read_key": None, "cond_sigma_range": (0.0, 0.02),
                               "cond_noise_prob": 0.5},
    "MinRFNoiseModule": {"ln": True, "stratisfied": False, "mode_scale": 0.0, "noise_read_key": None},
    "VideoMinRFPipeline": {"noise_read_key": None, "zero_noise": False, "cond_vae_latents_key": None},
    "VidTokVAE": {"tokenizer_id": STANDARD_VAE_ID, "chunk_size": None},
}


@dataclass
class KeyRule:
    """One official tensor and where it goes in our state dict."""

    original: str
    converted: str
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None


@dataclass
class ParsedOriginal:
    config_kwargs: dict[str, Any]
    key_rules: list[KeyRule] = field(default_factory=list)


class _Module:
    """One entry of an official module_dict, with strict access to its arguments."""

    def __init__(self, where: str, name: str, spec: dict):
        self.where, self.name, self.spec = where, name, spec
        target = spec.get("_target_")
        if not isinstance(target, str):
            raise OriginalCheckpointError(f"{where}.{name}: missing `_target_`.")
        self.cls = target.rsplit(".", 1)[-1]
        known = _KNOWN_ARGS.get(self.cls)
        if known is None:
            raise OriginalCheckpointError(f"{where}.{name}: module class {self.cls} is not supported here.")
        unknown = sorted(set(spec) - known - {"_target_", "_partial_"})
        if unknown:
            raise OriginalCheckpointError(f"{where}.{name} ({self.cls}): unknown arguments {unknown}.")

    @property
    def label(self) -> str:
        return f"{self.where}.{self.name} ({self.cls})"

    def get(self, arg: str) -> Any:
        if arg in self.spec:
            return self.spec[arg]
        defaults = _DEFAULTS.get(self.cls, {})
        if arg in defaults:
            return defaults[arg]
        raise OriginalCheckpointError(f"{self.label}: required argument `{arg}` is missing.")

    def fail(self, message: str) -> OriginalCheckpointError:
        return OriginalCheckpointError(f"{self.label}: {message}")

    def require(self, arg: str, allowed: tuple, why: str = "") -> Any:
        value = self.get(arg)
        if value not in allowed:
            raise self.fail(f"`{arg}`={value!r} is not supported (supported: {list(allowed)}){'; ' + why if why else ''}.")
        return value


def check_targets(tree: Any, path: str = "config") -> None:
    """Raise if any `_target_` in the tree is outside the official allow-list (listing all of them)."""
    bad: list[str] = []

    def walk(node, where):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "_target_":
                    if not isinstance(value, str) or value not in ALLOWED_TARGETS:
                        bad.append(f"{where}: {value!r}")
                else:
                    walk(value, f"{where}.{key}")
        elif isinstance(node, (list, tuple)):
            for index, item in enumerate(node):
                walk(item, f"{where}[{index}]")

    walk(tree, path)
    if bad:
        raise OriginalCheckpointError(
            "the config contains `_target_`s outside the official allow-list (refusing to convert): " + "; ".join(bad)
        )


def _posemb_spec(module: _Module, num_dims: int) -> dict:
    kind = module.require("posemb_type", ("learnable_sum", "learnable_prod", "sincos"))
    scaling = module.require("posemb_scaling", ("absolute", "interpolate"))
    sizes = list(module.get("max_sizes"))
    if len(sizes) != num_dims:
        raise module.fail(f"`max_sizes`={sizes} must have {num_dims} entries for this input.")
    return {"type": kind, "max_sizes": sizes, "scaling": scaling}


def _posemb_transform(kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if kind == "sincos":
        return lambda t: t.reshape(t.shape[1:]) if t.dim() == 4 and t.shape[0] == 1 else t
    # official [n_dims, 1, D, M] -> ours [n_dims, M, D]
    return lambda t: t.squeeze(1).transpose(1, 2).contiguous() if t.dim() == 4 else t


def _check_dtype_override(module: _Module) -> None:
    if module.get("dtype_override") not in (None, "fp32", "float32"):
        raise module.fail(f"`dtype_override`={module.get('dtype_override')!r} is not supported (use None or fp32).")


def _check_norm_layer(module: _Module) -> bool:
    norm = module.get("norm_layer")
    if norm == "default":
        return True
    if norm is None:
        return False
    raise module.fail("`norm_layer` must be omitted (parameter-free fp32 LayerNorm) or null.")


def _transformer_kwargs(module: _Module, side: str, dim: int) -> dict:
    for arg in ("score_mod_read_key", "rope_forward_read_key"):
        if module.get(arg) is not None:
            raise module.fail(f"`{arg}` is not supported (the released models use neither score mods nor RoPE).")
    if "act_layer" in module.spec or "norm_layer" in module.spec:
        raise module.fail("custom `act_layer` / `norm_layer` are not supported.")
    for arg in ("drop", "drop_path_rate"):
        if module.get(arg):
            logger.warning("%s: `%s`=%s only affects training and is not reproduced.", module.label, arg, module.get(arg))
    if module.get("dim") != dim:
        raise module.fail(f"`dim`={module.get('dim')} differs from the width {dim} of its inputs.")
    return {
        f"{side}_hidden_size": dim,
        f"{side}_num_layers": module.get("depth"),
        f"{side}_head_dim": module.get("head_dim"),
        f"{side}_mlp_ratio": float(module.get("mlp_ratio")),
        f"{side}_gated_mlp": bool(module.get("gated_mlp")),
        f"{side}_qk_norm": bool(module.get("qk_norm")),
        f"{side}_qkv_bias": bool(module.get("qkv_bias")),
        f"{side}_proj_bias": bool(module.get("proj_bias")),
        f"{side}_mlp_bias": bool(module.get("mlp_bias")),
    }


def _block_rules(module_prefix: str, ours_prefix: str, depth: int, gated: bool, biases: dict, adaln_target: str | None):
    rules = []
    for index in range(depth):
        src, dst = f"{module_prefix}.blocks.{index}", f"{ours_prefix}.{index}"
        names = [("attn.wq", "attn.q_proj", biases["qkv"]), ("attn.wk", "attn.k_proj", biases["qkv"]),
                 ("attn.wv", "attn.v_proj", biases["qkv"]), ("attn.proj", "attn.o_proj", biases["proj"]),
                 ("mlp.fc1", "mlp.gate_proj", biases["mlp"]), ("mlp.fc2", "mlp.down_proj", biases["mlp"])]
        if gated:
            names.append(("mlp.fc3", "mlp.up_proj", biases["mlp"]))
        for official, ours, has_bias in names:
            rules.append(KeyRule(f"{src}.{official}.weight", f"{dst}.{ours}.weight"))
            if has_bias:
                rules.append(KeyRule(f"{src}.{official}.bias", f"{dst}.{ours}.bias"))
        if adaln_target is not None:
            for param in ("weight", "bias"):
                rules.append(KeyRule(f"{src}.adaLN_modulation.1.{param}", f"{adaln_target}.{index}.{param}"))
    return rules


def _linear_rules(src: str, dst: str, bias: bool) -> list[KeyRule]:
    rules = [KeyRule(f"{src}.weight", f"{dst}.weight")]
    if bias:
        rules.append(KeyRule(f"{src}.bias", f"{dst}.bias"))
    return rules


class _Parser:
    def __init__(self, tree: dict):
        self.tree = tree
        self.kwargs: dict[str, Any] = {}
        self.rules: list[KeyRule] = []

    # -- encoder ------------------------------------------------------------------------------------------------
    def parse_encoder(self, module_dict: dict, vae_latents_key: str, latent_channels: int) -> str:
        """Returns the data-dict key of the FSQ inputs the encoder writes."""
        kinds = {vae_latents_key: "latents"}
        base = ORIGINAL_PREFIX + "encoder.module_dict"
        seen: dict[str, _Module] = {}
        packer = unpacker = None
        dim = None
        for name, spec in module_dict.items():
            module = _Module("encoder", name, spec)
            cls = module.cls
            src = f"{base}.{name}"
            if cls == "PerSampleOp":
                op = module.get("per_sample_op").get("_target_", "").rsplit(".", 1)[-1]
                if kinds.get(module.get("read_key")) != "latents" or op != "channels_first_to_last":
                    raise module.fail("only `channels_first_to_last` on the VAE latents is supported in the encoder.")
                kinds[module.get("write_key")] = "latents_last"
            elif cls == "PatchEmbedder":
                if kinds.get(module.get("input_tensor_list_read_key")) != "latents_last":
                    raise module.fail("must read the channels-last VAE latents.")
                if module.get("flatten_patches") or module.get("dim") is None:
                    raise module.fail("needs `flatten_patches: false` and a `dim` (time-interleaved packing).")
                if module.get("channels_in") != latent_channels:
                    raise module.fail(f"`channels_in` must be the VAE latent channels ({latent_channels}).")
                dim = module.get("dim")
                self.kwargs["encoder_patch_size"] = list(module.get("patch_sizes"))
                self.rules += _linear_rules(f"{src}.patch_proj", "encoder.patch_embed.proj", True)
                kinds[module.get("patches_list_write_key")] = "patches"
            elif cls == "PositionalEmbeddingAdder":
                kind = kinds.get(module.get("read_key"))
                if kind not in ("patches", "registers") or f"posemb_{kind}" in seen:
                    raise module.fail("must add to the patch or register tokens (once each).")
                spec_pe = _posemb_spec(module, 3 if kind == "patches" else 2)
                self.kwargs[f"encoder_{'patch' if kind == 'patches' else 'register'}_position_embedding"] = spec_pe
                target = "encoder.patch_pos_embed" if kind == "patches" else "encoder.register_pos_embed"
                self.rules.append(KeyRule(f"{src}.posembs", f"{target}.weight", _posemb_transform(spec_pe["type"])))
                seen[f"posemb_{kind}"] = module
                kinds[module.get("write_key")] = kind
            elif cls == "RegistersTemporal2D":
                if kinds.get(module.get("input_tensor_list_read_key")) != "patches":
                    raise module.fail("must derive its sizes from the patch tokens.")
                module.require("ordering_mode", ("nested",))
                if module.get("extra_registers_write_key") is not None:
                    raise module.fail("`extra_registers_write_key` (extra register tables) is not supported.")
                n_min, n_max, n_eval = module.get("n_min"), module.get("n_max"), module.get("n_eval")
                if n_min != n_max:
                    logger.warning("%s: training samples %d..%d registers; inference uses %d.", module.label,
                                   n_min, n_max, n_eval or n_max)
                self.kwargs.update(num_registers=n_max, num_eval_registers=n_eval, register_max_frames=module.get("t_max"))
                self.rules.append(KeyRule(f"{src}.registers", "encoder.registers"))
                kinds[module.get("registers_write_key")] = "registers"
            elif cls == "BlockWiseSequenceInterleavePacker":
                packer = module
                order = [kinds.get(key) for key in module.get("input_list_read_keys")]
                if sorted(order, key=str) != ["patches", "registers"]:
                    raise module.fail(f"must pack exactly the patch and register tokens, got inputs {order}.")
                self._packer_kwargs(module, "encoder", order)
                if module.get("emb_packing_fn_write_key") is not None:
                    raise module.fail("the encoder has no adaLN, so no embedding packing function is expected.")
                kinds[module.get("packed_seq_write_key")] = "sequence"
            elif cls == "FlexTransformer":
                if packer is None or module.get("input_seq_read_key") != packer.get("packed_seq_write_key"):
                    raise module.fail("must read the packed sequence.")
                if module.get("block_mask_read_key") != packer.get("block_mask_write_key"):
                    raise module.fail("must use the packer's attention mask.")
                if module.get("adaLN_emb_read_key") is not None:
                    raise module.fail("adaLN is not supported in the encoder.")
                self.kwargs.update(_transformer_kwargs(module, "encoder", dim))
                biases = {"qkv": module.get("qkv_bias"), "proj": module.get("proj_bias"), "mlp": module.get("mlp_bias")}
                self.rules += _block_rules(src, "encoder.blocks", module.get("depth"), module.get("gated_mlp"), biases, None)
                kinds[module.get("output_seq_write_key")] = "sequence_out"
            elif cls == "SequenceInterleavedUnpacker":
                unpacker = module
                if kinds.get(module.get("packed_seq_read_key")) != "sequence_out":
                    raise module.fail("must unpack the transformer output.")
                out_keys = module.get("inner_seq_write_keys")
                order = [kinds[key] for key in packer.get("input_list_read_keys")]
                for key, kind in zip(out_keys, order):
                    kinds[key] = f"{kind}_out"
            elif cls == "LinearHead":
                if kinds.get(module.get("read_key")) != "registers_out":
                    raise module.fail("must read the register outputs of the transformer.")
                self._plain_head(module, "encoder", dim)
                self.rules += _linear_rules(f"{src}.proj", "encoder.fsq_head.proj", module.get("proj_bias"))
                kinds[module.get("write_key")] = "fsq_latents"
                self.kwargs["_fsq_dim"] = module.get("dim_out")
            else:
                raise module.fail("is not an encoder module the converter knows.")
        fsq_keys = [key for key, kind in kinds.items() if kind == "fsq_latents"]
        if len(fsq_keys) != 1 or unpacker is None:
            raise OriginalCheckpointError("encoder: expected one complete chain VAE latents -> ... -> LinearHead.")
        return fsq_keys[0]

    def _plain_head(self, module: _Module, side: str, dim: int) -> None:
        if module.get("use_mup_readout"):
            raise module.fail("`use_mup_readout: true` cannot run at inference (the official MuReadout needs muP shapes).")
        _check_dtype_override(module)
        if module.get("adaLN_emb_read_key") is not None:
            raise module.fail("adaLN in the encoder head is not supported.")
        if module.get("dim") != dim:
            raise module.fail(f"`dim` must be the transformer width {dim}.")
        self.kwargs[f"{side}_head_norm"] = _check_norm_layer(module)
        self.kwargs[f"{side}_head_bias"] = bool(module.get("proj_bias"))

    def _packer_kwargs(self, module: _Module, side: str, order: list[str]) -> None:
        mode = module.require(
            "mask_mode",
            ("full", "causal", "time_block_causal", "time_block_causal_last", "flexible_time_block_causal_last"),
        )
        self.kwargs[f"{side}_attention_mask"] = mode
        self.kwargs[f"{side}_token_order"] = order
        cross = module.get("cross_timestep_attention_config")
        self.kwargs[f"{side}_cross_timestep_attention"] = dict(cross) if mode == "flexible_time_block_causal_last" else None
        if module.get("repa_block_mask_write_key") is not None:
            logger.warning("%s: the REPA mask is training-only and not reproduced.", module.label)

    # -- decoder ------------------------------------------------------------------------------------------------
    def parse_decoder(self, module_dict: dict, quants_key: str, noised_key: str, timesteps_key: str,
                      output_key: str, latent_channels: int) -> None:
        kinds = {quants_key: "codes", noised_key: "noisy", timesteps_key: "timesteps"}
        base = ORIGINAL_PREFIX + "decoder.module_dict"
        ops: list[str] = []
        packer = None
        dim = None
        temb_key = None
        patch_size = None
        done = set()
        for name, spec in module_dict.items():
            module = _Module("decoder", name, spec)
            cls = module.cls
            src = f"{base}.{name}"
            if cls == "LinearLayer":
                if kinds.get(module.get("read_key")) != "codes":
                    raise module.fail("must read the FSQ codes.")
                _check_dtype_override(module)
                if module.get("dim_in") != self.kwargs["_fsq_dim"]:
                    raise module.fail(f"`dim_in` must be the FSQ dimension {self.kwargs['_fsq_dim']}.")
                dim = module.get("dim")
                self.kwargs["decoder_register_embed_bias"] = bool(module.get("proj_bias"))
                self.rules += _linear_rules(f"{src}.proj", "decoder.register_embed", module.get("proj_bias"))
                kinds[module.get("write_key")] = "registers"
            elif cls in ("MaskedNestedDropout", "MaskedPrefixDropout", "LearnedNullCond"):
                if kinds.get(module.get("read_write_key")) != "registers":
                    raise module.fail("must act on the register tokens.")
                if cls == "MaskedNestedDropout":
                    op, param, target = "nested_dropout", "dropout_mask_token", "decoder.register_mask_token"
                    self.kwargs["nested_dropout_sampling"] = module.get("size_sampling_mode")
                    if module.get("eval_keep_k_read_key") is None:
                        raise module.fail("needs an `eval_keep_k_read_key` so inference can choose k.")
                elif cls == "MaskedPrefixDropout":
                    op, param, target = "prefix_masking", "dropout_mask_token", "decoder.prefix_mask_token"
                else:
                    op, param, target = "null_condition", "nullcond", "decoder.null_condition"
                    if module.get("replace_with_single_token"):
                        raise module.fail("`replace_with_single_token` breaks time-interleaved packing; unsupported.")
                    self.kwargs["null_condition_dropout_prob"] = float(module.get("dropout_prob"))
                if op in ops:
                    raise module.fail(f"{op} appears twice.")
                ops.append(op)
                self.rules.append(KeyRule(f"{src}.{param}", target))
            elif cls == "PositionalEmbeddingAdder":
                kind = kinds.get(module.get("read_key"))
                if kind not in ("patches", "registers") or f"posemb_{kind}" in done:
                    raise module.fail("must add to the patch or register tokens (once each).")
                done.add(f"posemb_{kind}")
                spec_pe = _posemb_spec(module, 3 if kind == "patches" else 2)
                if kind == "registers":
                    ops.append("position_embedding")
                    self.kwargs["decoder_register_position_embedding"] = spec_pe
                    target = "decoder.register_pos_embed.weight"
                else:
                    self.kwargs["decoder_patch_position_embedding"] = spec_pe
                    target = "decoder.patch_pos_embed.weight"
                self.rules.append(KeyRule(f"{src}.posembs", target, _posemb_transform(spec_pe["type"])))
                kinds[module.get("write_key")] = kind
            elif cls == "PerSampleOp":
                op = module.get("per_sample_op").get("_target_", "").rsplit(".", 1)[-1]
                kind = kinds.get(module.get("read_key"))
                if kind == "noisy" and op == "channels_first_to_last":
                    kinds[module.get("write_key")] = "noisy_last"
                elif kind == "head_out" and op == "channels_last_to_first":
                    if module.get("write_key") != output_key:
                        raise module.fail(f"must write the pipeline's output key {output_key!r}.")
                    kinds[module.get("write_key")] = "velocity"
                else:
                    raise module.fail(f"unsupported per-sample op {op} on {kind or module.get('read_key')!r}.")
            elif cls == "PatchEmbedder":
                if kinds.get(module.get("input_tensor_list_read_key")) != "noisy_last":
                    raise module.fail("must read the channels-last noisy latents.")
                if module.get("flatten_patches") or module.get("dim") is None:
                    raise module.fail("needs `flatten_patches: false` and a `dim`.")
                if module.get("channels_in") != latent_channels:
                    raise module.fail(f"`channels_in` must be the VAE latent channels ({latent_channels}).")
                if dim is not None and module.get("dim") != dim:
                    raise module.fail(f"`dim` differs from the register width {dim}.")
                patch_size = list(module.get("patch_sizes"))
                self.kwargs["decoder_patch_size"] = patch_size
                self.rules += _linear_rules(f"{src}.patch_proj", "decoder.patch_embed.proj", True)
                kinds[module.get("patches_list_write_key")] = "patches"
            elif cls == "BlockWiseSequenceInterleavePacker":
                packer = module
                order = [kinds.get(key) for key in module.get("input_list_read_keys")]
                if sorted(order, key=str) != ["patches", "registers"]:
                    raise module.fail(f"must pack exactly the patch and register tokens, got inputs {order}.")
                self._packer_kwargs(module, "decoder", order)
                if module.get("emb_packing_fn_write_key") is None or not module.get("per_subseq_embs"):
                    raise module.fail("needs `emb_packing_fn_write_key` with `per_subseq_embs: true` for adaLN.")
                kinds[module.get("packed_seq_write_key")] = "sequence"
            elif cls == "TimestepEmbedder":
                if kinds.get(module.get("timesteps_read_key")) != "timesteps":
                    raise module.fail("must read the flow timesteps.")
                if module.get("temb_as_tokens"):
                    raise module.fail("`temb_as_tokens` is not supported.")
                self.kwargs["time_embedding_frequency_size"] = module.get("frequency_embedding_size")
                self.kwargs["time_embedding_max_timestep"] = float(module.get("max_timestep"))
                self.rules += _linear_rules(f"{src}.mlp.0", "decoder.time_embed.linear_1", True)
                self.rules += _linear_rules(f"{src}.mlp.2", "decoder.time_embed.linear_2", True)
                temb_key = module.get("time_embedding_write_key")
                kinds[temb_key] = "temb"
            elif cls == "FlexTransformer":
                if packer is None or module.get("input_seq_read_key") != packer.get("packed_seq_write_key"):
                    raise module.fail("must read the packed sequence.")
                if module.get("block_mask_read_key") != packer.get("block_mask_write_key"):
                    raise module.fail("must use the packer's attention mask.")
                if kinds.get(module.get("adaLN_emb_read_key")) != "temb":
                    raise module.fail("must be modulated (adaLN) by the time embedding.")
                if module.get("adaLN_packing_fn_read_key") != packer.get("emb_packing_fn_write_key"):
                    raise module.fail("must use the packer's embedding packing function.")
                if module.get("adaLN_expansion") != 2:
                    raise module.fail("`adaLN_expansion` must be 2 (one modulation per packed part).")
                self.kwargs.update(_transformer_kwargs(module, "decoder", dim))
                self.kwargs["decoder_adaln_expansion"] = 2
                if module.get("intermediate_layer_write_key") is not None:
                    logger.warning("%s: intermediate (REPA) features are training-only and not produced.", module.label)
                biases = {"qkv": module.get("qkv_bias"), "proj": module.get("proj_bias"), "mlp": module.get("mlp_bias")}
                self.rules += _block_rules(
                    src, "decoder.blocks", module.get("depth"), module.get("gated_mlp"), biases, "decoder.block_modulations"
                )
                kinds[module.get("output_seq_write_key")] = "sequence_out"
            elif cls == "SequenceInterleavedUnpacker":
                if kinds.get(module.get("packed_seq_read_key")) != "sequence_out":
                    raise module.fail("must unpack the transformer output.")
                order = [kinds[key] for key in packer.get("input_list_read_keys")]
                for key, kind in zip(module.get("inner_seq_write_keys"), order):
                    kinds[key] = f"{kind}_out"
            elif cls == "ToPatchesLinearHead":
                if kinds.get(module.get("read_key")) != "patches_out":
                    raise module.fail("must read the patch outputs of the transformer.")
                if module.get("use_mup_readout"):
                    raise module.fail("`use_mup_readout: true` cannot run at inference.")
                _check_dtype_override(module)
                if kinds.get(module.get("adaLN_emb_read_key")) != "temb" or module.get("adaLN_packing_fn_read_key"):
                    raise module.fail("must be modulated per sample by the time embedding (no packing function).")
                if module.get("channels_out") != latent_channels or list(module.get("patch_sizes")) != patch_size:
                    raise module.fail("must output latent channels with the patch embedder's patch size.")
                if module.get("dim") != dim:
                    raise module.fail(f"`dim` must be the transformer width {dim}.")
                self.kwargs["decoder_head_norm"] = _check_norm_layer(module)
                self.kwargs["decoder_head_bias"] = bool(module.get("proj_bias"))
                self.kwargs["decoder_head_adaln_bias"] = bool(module.get("adaLN_bias"))
                self.rules += _linear_rules(f"{src}.adaLN_modulation.1", "decoder.head.modulation", module.get("adaLN_bias"))
                self.rules += _linear_rules(f"{src}.proj", "decoder.head.proj", module.get("proj_bias"))
                kinds[module.get("write_key")] = "head_out"
            else:
                raise module.fail(
                    "is not a decoder module the converter knows (a REPA `TransformerHead` is training-only and "
                    "not supported yet)."
                )
        if "velocity" not in kinds.values():
            raise OriginalCheckpointError(f"decoder: no module writes the velocity to {output_key!r}.")
        if "decoder_register_position_embedding" not in self.kwargs:
            self.kwargs["decoder_register_position_embedding"] = None
        if "decoder_patch_position_embedding" not in self.kwargs:
            self.kwargs["decoder_patch_position_embedding"] = None
        self.kwargs["decoder_register_ops"] = ops


def parse_original_config(original: dict, vae_geometry: dict | None = None) -> ParsedOriginal:
    """Parse an official hub `config.json` (as a dict, in file order) into our config kwargs and key rules.

    `vae_geometry` overrides the packaged VidTok yaml (the keys of `STANDARD_VAE`), e.g. as read from the
    checkpoint's weight shapes for a narrow test VAE.
    """
    try:
        return _parse_original_config(original, vae_geometry)
    except OriginalCheckpointError:
        raise
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as error:
        # a config from a stranger can be malformed anywhere: report it as such, never as an internal crash
        raise OriginalCheckpointError(
            f"config.json is malformed ({type(error).__name__}: {error}); it does not describe an official "
            "VideoFlexTok model."
        ) from None


def _is_fsq_level(level: Any) -> bool:
    """An FSQ level as the official configs write it: an integer >= 2 (possibly as an integral float)."""
    if isinstance(level, bool) or not isinstance(level, (int, float)):
        return False
    return math.isfinite(level) and level == int(level) and level >= 2


def _parse_original_config(original: dict, vae_geometry: dict | None) -> ParsedOriginal:
    if not isinstance(original, dict) or "video_flex_tok" not in original:
        raise OriginalCheckpointError(
            "not an official VideoFlexTok hub config: expected a dict with a `video_flex_tok` hydra tree."
        )
    check_targets(original)
    unknown = sorted(set(original) - {"video_flex_tok", "chunk_size", "overlap_size_frames", "vae_video_sizes",
                                      "video_preprocess_args"})
    if unknown:
        raise OriginalCheckpointError(f"config.json: unknown top-level keys {unknown}.")
    root = original["video_flex_tok"]
    if root.get("_target_", "").rsplit(".", 1)[-1] not in ("VideoFlexTok", "VideoFlowMatchingResampler"):
        raise OriginalCheckpointError("video_flex_tok: `_target_` must be the VideoFlexTok wrapper.")
    extra = sorted(set(root) - {"_target_", "vae", "encoder", "decoder", "regularizer", "flow_matching_noise_module",
                                "pipeline"})
    if extra:
        raise OriginalCheckpointError(f"video_flex_tok: unknown entries {extra}.")
    parser = _Parser(original)

    vae = _Module("video_flex_tok", "vae", root["vae"])
    if vae.cls != "VidTokVAE":
        raise vae.fail("only the VidTok VAE is supported.")
    if vae.get("tokenizer_id") != STANDARD_VAE_ID and vae_geometry is None:
        raise vae.fail(f"unknown `tokenizer_id` {vae.get('tokenizer_id')!r}; only {STANDARD_VAE_ID!r} is packaged.")
    if vae.get("chunk_size") is not None:
        raise vae.fail("VAE-level `chunk_size` is not supported (the official path is inconsistent).")
    geometry = dict(STANDARD_VAE)
    geometry.update(vae_geometry or {})
    latent_channels = geometry["latent_channels"]
    parser.kwargs.update(
        vae_in_channels=geometry["in_channels"],
        vae_base_channels=geometry["base_channels"],
        vae_channel_multipliers=list(geometry["channel_multipliers"]),
        vae_num_res_blocks=geometry["num_res_blocks"],
        vae_latent_channels=latent_channels,
        vae_temporal_downsample_factor=geometry["temporal_downsample_factor"],
    )

    regularizer = _Module("video_flex_tok", "regularizer", root["regularizer"])
    if regularizer.cls != "FSQ":
        raise regularizer.fail("only FSQ is supported.")
    for arg in ("drop_quant_p", "corrupt_tokens_p"):
        if regularizer.get(arg):
            logger.warning("%s: `%s` only affects training and is not reproduced.", regularizer.label, arg)
    levels = regularizer.get("levels")
    if not isinstance(levels, (list, tuple)) or not levels or not all(map(_is_fsq_level, levels)):
        raise regularizer.fail(f"`levels` must be a non-empty list of integers >= 2, got {levels!r}.")
    parser.kwargs["fsq_levels"] = [int(level) for level in levels]

    for side in ("encoder", "decoder"):
        wrapper = _Module("video_flex_tok", side, root[side])
        if wrapper.cls != "SequentialModuleDictWrapper":
            raise wrapper.fail("expected a SequentialModuleDictWrapper.")
    fsq_key = parser.parse_encoder(root["encoder"]["module_dict"], vae.get("vae_latents_write_key"), latent_channels)
    if regularizer.get("latents_read_key") != fsq_key:
        raise regularizer.fail(f"must read the encoder output {fsq_key!r}.")
    if parser.kwargs["_fsq_dim"] != len(parser.kwargs["fsq_levels"]):
        raise regularizer.fail("the encoder head's output width differs from the number of FSQ levels.")

    pipeline = _Module("video_flex_tok", "pipeline", root["pipeline"])
    if pipeline.cls != "VideoMinRFPipeline":
        raise pipeline.fail("only VideoMinRFPipeline is supported.")
    if pipeline.get("noise_read_key") is not None or pipeline.get("zero_noise"):
        raise pipeline.fail("`noise_read_key` / `zero_noise` are not supported.")
    if pipeline.get("out_channels") != latent_channels:
        raise pipeline.fail(f"`out_channels` must be the VAE latent channels ({latent_channels}).")
    if pipeline.get("reconst_write_key") != vae.get("vae_latents_read_key"):
        raise pipeline.fail("must write the latents the VAE decodes.")
    parser.parse_decoder(
        root["decoder"]["module_dict"],
        quants_key=regularizer.get("quants_write_key"),
        noised_key=pipeline.get("noised_videos_read_key"),
        timesteps_key=pipeline.get("timesteps_read_key"),
        output_key=pipeline.get("reconst_write_key"),
        latent_channels=latent_channels,
    )

    noise = root.get("flow_matching_noise_module")
    if noise is not None:
        noise_module = _Module("video_flex_tok", "flow_matching_noise_module", noise)
        if not noise_module.get("ln") or noise_module.get("stratisfied"):
            logger.warning("%s: non-default timestep sampling is training-only and not reproduced.", noise_module.label)
        if noise_module.cls == "PrefixMinRFNoiseModule":
            lengths = noise_module.get("prefix_len")
            probs = noise_module.get("keep_prefix_prob")
            if lengths is None or lengths == 0:
                lengths, probs = [0], [1.0]
            elif isinstance(lengths, int):
                probs = probs if probs is not None else 1.0
                lengths, probs = [0, lengths], [1.0 - float(probs), float(probs)]
            parser.kwargs.update(
                prefix_lengths=[int(v) for v in lengths],
                prefix_probabilities=[float(p) for p in probs],
                prefix_noise_range=[float(v) for v in noise_module.get("cond_sigma_range")],
                prefix_noise_probability=float(noise_module.get("cond_noise_prob")),
            )
        else:
            parser.kwargs.update(prefix_lengths=[0], prefix_probabilities=[1.0])

    # video geometry
    chunk_size = original.get("chunk_size", 17)
    overlap = original.get("overlap_size_frames", 1)
    latent_sizes = original.get("vae_video_sizes", [5, 32, 32])
    preprocess = original.get("video_preprocess_args", {}) or {}
    unknown = sorted(set(preprocess) - {"chunk_size", "overlap_size_frames", "overlap_size", "size", "fps", "num_frames"})
    if unknown:
        raise OriginalCheckpointError(f"video_preprocess_args: unknown keys {unknown}.")
    spatial = 2 ** (len(geometry["channel_multipliers"]) - 1)
    if not isinstance(latent_sizes, (list, tuple)) or len(latent_sizes) != 3 or any(
        not isinstance(side, int) or isinstance(side, bool) or side < 1 for side in latent_sizes
    ):
        raise OriginalCheckpointError(f"vae_video_sizes {latent_sizes!r} must be three positive integers [t, h, w].")
    latent_grid = [latent_sizes[1], latent_sizes[2]]
    # `size` as the official reader takes it (torchvision Resize): an int (or [S]) is a square frame, [H, W] any
    # shape; without it the frames are the latent grid times the VAE factor
    size = preprocess.get("size")
    if size is None:
        size = latent_grid[0] * spatial if latent_grid[0] == latent_grid[1] else [side * spatial for side in latent_grid]
    if isinstance(size, (list, tuple)) and len(size) == 1:
        size = size[0]
    frame = [size, size] if isinstance(size, int) and not isinstance(size, bool) else size
    if not isinstance(frame, (list, tuple)) or len(frame) != 2 or any(
        not isinstance(side, int) or isinstance(side, bool) or side < 1 for side in frame
    ):
        raise OriginalCheckpointError(
            f"video_preprocess_args.size {size!r} must be a positive integer or a pair [height, width]."
        )
    if [side * spatial for side in latent_grid] != list(frame):
        raise OriginalCheckpointError(
            f"vae_video_sizes {latent_sizes} do not match the preprocessing size {size} (VAE factor {spatial}): a "
            f"{frame[0]} x {frame[1]} frame has a {frame[0] // spatial} x {frame[1] // spatial} latent grid."
        )
    for side in ("encoder", "decoder"):
        patch = parser.kwargs[f"{side}_patch_size"]
        if not isinstance(patch, (list, tuple)) or len(patch) != 3 or any(
            not isinstance(p, int) or isinstance(p, bool) or p < 1 for p in patch
        ):
            raise OriginalCheckpointError(f"the {side} patch_sizes {patch!r} must be three positive integers (t, h, w).")
        for axis, name in ((1, "height"), (2, "width")):
            if latent_grid[axis - 1] % patch[axis]:
                raise OriginalCheckpointError(
                    f"vae_video_sizes {latent_sizes}: the latent {name} {latent_grid[axis - 1]} is not divisible by "
                    f"the {side} patch {name} {patch[axis]} (patch_sizes {patch}); the official code cannot run it."
                )
        # an absolute (cropped) table smaller than the patch grid cannot be added to it
        spec = parser.kwargs.get(f"{side}_patch_position_embedding")
        grid = [latent_sizes[0] // patch[0], latent_grid[0] // patch[1], latent_grid[1] // patch[2]]
        if spec is not None and spec["scaling"] == "absolute" and any(g > m for g, m in zip(grid, spec["max_sizes"])):
            raise OriginalCheckpointError(
                f"vae_video_sizes {latent_sizes}: the {side} patch grid {grid} (t, h, w) exceeds its position "
                f"embedding's max_sizes {spec['max_sizes']}; the official code cannot run it."
            )
    parser.kwargs.update(
        chunk_size=chunk_size,
        overlap_size_frames=overlap,
        image_size=size if isinstance(size, int) else list(frame),
        fps=float(preprocess.get("fps") or 8.0),
    )
    expected_latent_frames = ChunkGeometry(
        chunk_size, overlap_frames=0, temporal_downsample_factor=geometry["temporal_downsample_factor"]
    ).latent_frames_per_chunk
    if latent_sizes[0] != expected_latent_frames:
        raise OriginalCheckpointError(
            f"vae_video_sizes {latent_sizes}: a {chunk_size}-frame chunk has {expected_latent_frames} latent frames."
        )
    parser.kwargs.pop("_fsq_dim")
    return ParsedOriginal(config_kwargs=parser.kwargs, key_rules=parser.rules)
