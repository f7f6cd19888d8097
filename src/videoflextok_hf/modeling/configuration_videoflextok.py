"""Configuration of the VideoFlexTok tokenizer.

Every architecture choice the official hydra configs can vary is a field here, so a converted checkpoint
is fully described by its `config.json`. Fields are grouped by component: video geometry and chunking,
the VidTok VAE, the encoder, the FSQ bottleneck and the rectified-flow decoder.
"""

from __future__ import annotations

import math
from dataclasses import field
from typing import Any

from transformers import PreTrainedConfig

from .chunking import ChunkGeometry

POSITION_EMBEDDING_TYPES = ("learnable_sum", "learnable_prod", "sincos")
POSITION_EMBEDDING_SCALINGS = ("absolute", "interpolate")
ATTENTION_MASK_MODES = (
    "full",
    "causal",
    "time_block_causal",
    "time_block_causal_last",
    "flexible_time_block_causal_last",
)
CROSS_TIMESTEP_KEYS = ("prefix2prefix", "prefix2nonprefix", "nonprefix2prefix", "nonprefix2nonprefix")
TOKEN_PARTS = ("patches", "registers")
DECODER_REGISTER_OPS = ("position_embedding", "nested_dropout", "prefix_masking", "null_condition")
NESTED_DROPOUT_SAMPLING = ("uniform", "pow2", "pow2_roundup", "uniform_pow2", "uniform_halved", "halved", "zipf")

# Keys a saved config.json carries for transformers itself; everything else must be one of our fields.
_BASE_CONFIG_KEYS = {
    "transformers_version",
    "model_type",
    "auto_map",
    "torch_dtype",
    "attn_implementation",
    "output_attentions",
    "experts_implementation",
    "name_or_path",
    "_name_or_path",
    "_commit_hash",
    "num_labels",
    "per_layer_config",
}


# The official recommended decoding settings (official README for videoflextok_d18_d28: 30 steps, APG, scale 20;
# APG parameters of the official sampler); a config carries its own copy in `decoding_defaults`.
OFFICIAL_DECODING_DEFAULTS = {
    "num_inference_steps": 30,
    "guidance": "apg",
    "guidance_scale": 20.0,
    "apg_momentum": 0.0,
    "apg_eta": 0.0,
    "apg_norm_threshold": 0.6,
}


def _learnable_sum(max_sizes: list[int]) -> dict:
    return {"type": "learnable_sum", "max_sizes": list(max_sizes), "scaling": "absolute"}


def _err(field: str, value: Any, expected: str) -> ValueError:
    return ValueError(f"VideoFlexTokConfig.{field}={value!r} is invalid: expected {expected}.")


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _err(name, value, "a positive integer")


def _check_position_embedding(name: str, spec: Any, num_dims: int, allow_none: bool = True) -> None:
    if spec is None:
        if allow_none:
            return
        raise _err(name, spec, "a position-embedding dict")
    if not isinstance(spec, dict) or set(spec) != {"type", "max_sizes", "scaling"}:
        raise _err(name, spec, "None or a dict with exactly the keys 'type', 'max_sizes', 'scaling'")
    if spec["type"] not in POSITION_EMBEDDING_TYPES:
        raise _err(f"{name}['type']", spec["type"], f"one of {POSITION_EMBEDDING_TYPES}")
    if spec["scaling"] not in POSITION_EMBEDDING_SCALINGS:
        raise _err(f"{name}['scaling']", spec["scaling"], f"one of {POSITION_EMBEDDING_SCALINGS}")
    sizes = spec["max_sizes"]
    if not isinstance(sizes, (list, tuple)) or len(sizes) != num_dims:
        raise _err(f"{name}['max_sizes']", sizes, f"a list of {num_dims} positive integers")
    for size in sizes:
        _check_positive_int(f"{name}['max_sizes']", size)
    if spec["type"].startswith("learnable") and len(set(sizes)) != 1:
        raise _err(f"{name}['max_sizes']", sizes, "equal sizes for learnable embeddings (one table per axis)")
    if spec["type"] == "sincos" and num_dims != 2:
        raise _err(f"{name}['type']", "sincos", "a learnable type: sin-cos embeddings are 2-D only")
    if spec["scaling"] == "interpolate" and num_dims != 2:
        raise _err(f"{name}['scaling']", "interpolate", "'absolute': interpolation is 2-D only")


class VideoFlexTokConfig(PreTrainedConfig):
    r"""
    Configuration of [`VideoFlexTokModel`]. The defaults describe the released 256x256 model
    `EPFL-VILAB/videoflextok_d18_d28` as far as it is known; converted checkpoints store their own values.

    Video geometry:
        image_size (`int` or `[H, W]`): frame size the model works at: an int means square frames (short-side
            resize + center crop, as the official reader does with an int `size`), a pair `[height, width]` any
            shape (the official reader resizes to exactly that). `frame_size` is always the `(H, W)` pair and
            `latent_grid` the VAE latent grid `(h, w)`.
        fps (`float`): frame rate videos are resampled to before tokenization.
        chunk_size (`int`): frames per chunk (17). overlap_size_frames (`int`): frames shared by consecutive
            chunks (1); with overlap 0 chunks are disjoint. `chunk_geometry` (a `ChunkGeometry`) holds every count
            derived from them (latent / token steps per chunk, valid lengths, splitting and stitching).
    VAE (VidTok v1, causal KL):
        compressor (`str`): "vidtok" (the VAE the released models use), or a parameter-free stand-in with the same
        causal geometry for training from scratch: "patchify" (raw blocks, `vae_latent_channels = 3 * 4 * 8 * 8`) or
        "dct" (the `dct_coefficients_per_color` lowest 3-D DCT frequencies of each block,
        `vae_latent_channels = 3 * dct_coefficients_per_color`).
        dct_normalization (`str`): "per_band" brings every DCT channel to about unit scale; "uniform" divides all
            by the typical DC magnitude, so channels keep their natural (pixel-MSE) weights and the flow loss
            concentrates on the low frequencies that dominate PSNR.
        vae_in_channels, vae_base_channels, vae_channel_multipliers, vae_num_res_blocks, vae_latent_channels,
        vae_temporal_downsample_factor. The spatial factor is `2 ** (len(vae_channel_multipliers) - 1)`.
    Registers:
        num_registers (`int`): tokens per latent time step (N). num_eval_registers (`int`, *optional*): registers
        the encoder emits at inference (defaults to N). register_max_frames (`int`): time steps the learned
        registers are defined for (t_max).
    Encoder / decoder (prefix `encoder_` / `decoder_`):
        hidden_size, num_layers, head_dim, mlp_ratio, gated_mlp (SwiGLU), qk_norm, qkv_bias, proj_bias, mlp_bias,
        patch_size (t, h, w), patch_position_embedding (dict: type, max_sizes, scaling, or None),
        register_position_embedding (same, over (time, register index)), attention_mask (one of
        `ATTENTION_MASK_MODES`), cross_timestep_attention (dict for `flexible_time_block_causal_last`),
        token_order (order of patches and registers inside one time step), head_norm, head_bias.
    Decoder only:
        decoder_register_ops: the register pipeline in execution order (subset of `DECODER_REGISTER_OPS`).
        decoder_adaln_expansion: adaLN slots (one per token part), decoder_head_adaln_bias.
        time_embedding_frequency_size, time_embedding_max_period, time_embedding_max_timestep.
    FSQ:
        fsq_levels (`list[int]`): levels per code dimension; the codebook size is their product.
    Training (official objective):
        nested_dropout_sampling, null_condition_dropout_prob, prefix_lengths / prefix_probabilities
        (clean conditioning time steps and their probabilities), prefix_noise_range / prefix_noise_probability
        (conditioning steps are lightly noised with sigma ~ U(range) with that probability).
    Decoding:
        decoding_defaults (`dict`): the sampling settings the model is meant to be decoded with (keys of
            `OFFICIAL_DECODING_DEFAULTS`: num_inference_steps, guidance, guidance_scale, apg_momentum, apg_eta,
            apg_norm_threshold; missing keys take the official values). `VideoFlexTokPipeline` (and
            `model.detokenize`, the CLI, the evaluation) use them for every argument the caller leaves out.
    """

    model_type = "videoflextok"

    # video geometry and chunking
    image_size: int | list[int] = 256
    fps: float = 8.0
    chunk_size: int = 17
    overlap_size_frames: int = 1
    # VAE ("vidtok": the frozen VidTok v1 VAE; "patchify": the parameter-free stand-in for training tiny models)
    compressor: str = "vidtok"
    dct_coefficients_per_color: int = 16
    dct_normalization: str = "per_band"
    vae_in_channels: int = 3
    vae_base_channels: int = 128
    vae_channel_multipliers: list[int] | tuple[int, ...] = (1, 2, 4, 4)
    vae_num_res_blocks: int = 2
    vae_latent_channels: int = 16
    vae_temporal_downsample_factor: int = 4
    # registers
    num_registers: int = 256
    num_eval_registers: int | None = None
    register_max_frames: int = 5
    # encoder
    encoder_hidden_size: int = 1152
    encoder_num_layers: int = 18
    encoder_head_dim: int = 64
    encoder_mlp_ratio: float = 4.0
    encoder_gated_mlp: bool = True
    encoder_qk_norm: bool = True
    encoder_qkv_bias: bool = False
    encoder_proj_bias: bool = False
    encoder_mlp_bias: bool = False
    encoder_patch_size: list[int] | tuple[int, ...] = (1, 2, 2)
    encoder_patch_position_embedding: dict | None = field(default_factory=lambda: _learnable_sum([16, 16, 16]))
    encoder_register_position_embedding: dict | None = None
    encoder_attention_mask: str = "time_block_causal_last"
    encoder_cross_timestep_attention: dict | None = None
    encoder_token_order: list[str] | tuple[str, ...] = ("patches", "registers")
    encoder_head_norm: bool = True
    encoder_head_bias: bool = True
    # decoder
    decoder_hidden_size: int = 1792
    decoder_num_layers: int = 28
    decoder_head_dim: int = 64
    decoder_mlp_ratio: float = 4.0
    decoder_gated_mlp: bool = True
    decoder_qk_norm: bool = True
    decoder_qkv_bias: bool = False
    decoder_proj_bias: bool = False
    decoder_mlp_bias: bool = False
    decoder_patch_size: list[int] | tuple[int, ...] = (1, 2, 2)
    decoder_patch_position_embedding: dict | None = field(default_factory=lambda: _learnable_sum([16, 16, 16]))
    decoder_register_position_embedding: dict | None = field(default_factory=lambda: _learnable_sum([256, 256]))
    decoder_register_ops: list[str] | tuple[str, ...] = DECODER_REGISTER_OPS
    decoder_attention_mask: str = "time_block_causal"
    decoder_cross_timestep_attention: dict | None = None
    decoder_token_order: list[str] | tuple[str, ...] = ("patches", "registers")
    decoder_adaln_expansion: int = 2
    decoder_head_norm: bool = True
    decoder_head_bias: bool = True
    decoder_head_adaln_bias: bool = True
    decoder_register_embed_bias: bool = True
    time_embedding_frequency_size: int = 256
    time_embedding_max_period: float = 256.0
    time_embedding_max_timestep: float = 1.0
    # FSQ
    fsq_levels: list[int] | tuple[int, ...] = (8, 8, 8, 5, 5, 5)
    # training objective
    nested_dropout_sampling: str = "uniform"
    null_condition_dropout_prob: float = 0.1
    prefix_lengths: list[int] | tuple[int, ...] = (0, 1)
    prefix_probabilities: list[float] | tuple[float, ...] = (0.5, 0.5)
    prefix_noise_range: list[float] | tuple[float, ...] = (0.0, 0.02)
    prefix_noise_probability: float = 0.5
    initializer_range: float = 0.02
    # provenance of converted checkpoints (free-form, written by the converter)
    source_checkpoint: str | None = None
    conversion_version: str | None = None
    # the sampling settings the pipeline uses unless told otherwise (lives with the model: see the docstring)
    decoding_defaults: dict = field(default_factory=lambda: dict(OFFICIAL_DECODING_DEFAULTS))

    def __post_init__(self, **kwargs):
        unknown = sorted(set(kwargs) - _BASE_CONFIG_KEYS)
        if unknown:
            raise ValueError(
                f"VideoFlexTokConfig got unknown keys {unknown}. Check for typos; the accepted fields are listed "
                "in VideoFlexTokConfig's docstring (convert official hydra configs with "
                "`videoflextok_hf.conversion.config_from_original`)."
            )
        # tuples become lists so that config.json round-trips to an equal object
        for name in (
            "vae_channel_multipliers",
            "encoder_patch_size",
            "decoder_patch_size",
            "encoder_token_order",
            "decoder_token_order",
            "decoder_register_ops",
            "fsq_levels",
            "prefix_lengths",
            "prefix_probabilities",
            "prefix_noise_range",
        ):
            setattr(self, name, list(getattr(self, name)))
        if isinstance(self.image_size, tuple):
            self.image_size = list(self.image_size)
        self._validate_decoding_defaults()
        self._validate()
        super().__post_init__(**kwargs)

    def _validate_decoding_defaults(self) -> None:
        values = self.decoding_defaults
        if values is None:
            values = {}
        if not isinstance(values, dict) or set(values) - set(OFFICIAL_DECODING_DEFAULTS):
            raise _err("decoding_defaults", values, f"a dict with keys among {sorted(OFFICIAL_DECODING_DEFAULTS)}")
        values = {**OFFICIAL_DECODING_DEFAULTS, **values}
        _check_positive_int("decoding_defaults['num_inference_steps']", values["num_inference_steps"])
        if not isinstance(values["guidance"], str):
            raise _err("decoding_defaults['guidance']", values["guidance"], "a guidance name ('apg', 'cfg', 'none')")
        for key in ("guidance_scale", "apg_momentum", "apg_eta", "apg_norm_threshold"):
            if not isinstance(values[key], (int, float)) or isinstance(values[key], bool):
                raise _err(f"decoding_defaults[{key!r}]", values[key], "a number")
            values[key] = float(values[key])
        self.decoding_defaults = values

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        if not isinstance(config_dict, dict):
            raise ValueError(
                f"config.json must hold a JSON object of config fields, got a {type(config_dict).__name__}; the file "
                "is damaged or not a model config: download it again or re-run `save_pretrained`."
            )
        if "video_flex_tok" in config_dict:
            raise ValueError(
                "this config.json is an official VideoFlexTok checkpoint config (hydra tree), not a converted one. "
                "Convert it with `videoflextok-convert --src <repo or folder> --dst <folder>` or load it with "
                "`VideoFlexTokModel.from_original(...)`."
            )
        model_type = config_dict.get("model_type")
        if model_type is not None and model_type != cls.model_type:
            raise ValueError(
                f"this config.json describes a {model_type!r} model, not {cls.model_type!r}: point to a VideoFlexTok "
                "checkpoint folder or repo (its config.json has model_type 'videoflextok')."
            )
        return super().from_dict(config_dict, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        try:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        except ValueError as error:
            raise ValueError(f"{pretrained_model_name_or_path}/config.json: {error}") from None

    # ----------------------------------------------------------------------------------------------------------
    # derived quantities
    @property
    def vae_spatial_downsample_factor(self) -> int:
        return 2 ** (len(self.vae_channel_multipliers) - 1)

    @property
    def codebook_size(self) -> int:
        return math.prod(self.fsq_levels)

    @property
    def fsq_dim(self) -> int:
        return len(self.fsq_levels)

    @property
    def frame_size(self) -> tuple[int, int]:
        """Frame `(height, width)` in pixels (`image_size` as a pair)."""
        if isinstance(self.image_size, int):
            return (self.image_size, self.image_size)
        height, width = self.image_size
        return (height, width)

    @property
    def latent_grid(self) -> tuple[int, int]:
        """VAE latent grid `(h, w)` of one frame."""
        factor = self.vae_spatial_downsample_factor
        return tuple(side // factor for side in self.frame_size)

    @property
    def latent_size(self) -> int:
        """Side of the square latent grid (square frames only; use `latent_grid` for any shape)."""
        height, width = self.latent_grid
        if height != width:
            raise ValueError(
                f"latent_size is only defined for square frames; this config has latent_grid {(height, width)}."
            )
        return height

    @property
    def chunk_geometry(self) -> ChunkGeometry:
        """Chunk counts, valid lengths, splitting and stitching (see `ChunkGeometry`)."""
        return ChunkGeometry.from_config(self)

    @property
    def latent_frames_per_chunk(self) -> int:
        return self.chunk_geometry.latent_frames_per_chunk

    @property
    def overlap_size_latent_frames(self) -> int:
        return self.chunk_geometry.overlap_latent_frames

    @property
    def frame_stride(self) -> int:
        return self.chunk_geometry.frame_stride

    @property
    def eval_registers(self) -> int:
        return self.num_eval_registers or self.num_registers

    def num_frames_for_chunks(self, num_chunks: int) -> int:
        """Frames of a video made of `num_chunks` chunks (1 + 16K for the released models)."""
        return self.chunk_geometry.num_frames(num_chunks)

    def num_token_steps_for_chunks(self, num_chunks: int) -> int:
        """Token time steps of a video made of `num_chunks` chunks (1 + 4K for the released models)."""
        return self.chunk_geometry.num_token_steps(num_chunks)

    # ----------------------------------------------------------------------------------------------------------
    def _validate_image_size(self) -> None:
        size = self.image_size
        if isinstance(size, list):
            if len(size) != 2 or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in size):
                raise _err("image_size", size, "a positive integer (square frames) or [height, width]")
        else:
            _check_positive_int("image_size", size)

    def _validate(self) -> None:
        self._validate_image_size()
        for name in (
            "chunk_size",
            "vae_in_channels",
            "vae_base_channels",
            "vae_num_res_blocks",
            "vae_latent_channels",
            "vae_temporal_downsample_factor",
            "num_registers",
            "register_max_frames",
            "encoder_hidden_size",
            "encoder_num_layers",
            "encoder_head_dim",
            "decoder_hidden_size",
            "decoder_num_layers",
            "decoder_head_dim",
            "decoder_adaln_expansion",
            "time_embedding_frequency_size",
        ):
            _check_positive_int(name, getattr(self, name))
        if not isinstance(self.fps, (int, float)) or self.fps <= 0:
            raise _err("fps", self.fps, "a positive number")
        if not isinstance(self.overlap_size_frames, int) or not 0 <= self.overlap_size_frames < self.chunk_size:
            raise _err("overlap_size_frames", self.overlap_size_frames, f"an integer in [0, chunk_size={self.chunk_size})")
        factor = self.vae_temporal_downsample_factor
        if (self.chunk_size - 1) % factor:
            raise _err("chunk_size", self.chunk_size, f"1 + a multiple of vae_temporal_downsample_factor={factor}")
        if self.overlap_size_frames and (self.overlap_size_frames - 1) % factor:
            raise _err(
                "overlap_size_frames", self.overlap_size_frames, f"0 or 1 + a multiple of the temporal factor {factor}"
            )
        if not self.vae_channel_multipliers or any(
            not isinstance(m, int) or m < 1 for m in self.vae_channel_multipliers
        ):
            raise _err("vae_channel_multipliers", self.vae_channel_multipliers, "a non-empty list of positive integers")
        if factor & (factor - 1) or factor > 2 ** max(len(self.vae_channel_multipliers) - 2, 0):
            raise _err(
                "vae_temporal_downsample_factor",
                factor,
                "a power of two the VAE levels can provide (at most 2 ** (len(vae_channel_multipliers) - 2))",
            )
        if self.compressor not in ("vidtok", "patchify", "dct"):
            raise _err("compressor", self.compressor, "'vidtok', 'patchify' or 'dct'")
        block = factor * self.vae_spatial_downsample_factor**2
        if self.compressor != "vidtok":
            if not isinstance(self.dct_coefficients_per_color, int) or not 1 <= self.dct_coefficients_per_color <= block:
                raise _err("dct_coefficients_per_color", self.dct_coefficients_per_color, f"an integer in 1..{block}")
            if self.dct_normalization not in ("per_band", "uniform"):
                raise _err("dct_normalization", self.dct_normalization, "'per_band' or 'uniform'")
            per_color = block if self.compressor == "patchify" else self.dct_coefficients_per_color
            expected = self.vae_in_channels * per_color
            if self.vae_latent_channels != expected:
                raise _err("vae_latent_channels", self.vae_latent_channels, f"{expected} for the {self.compressor} compressor")
        spatial = self.vae_spatial_downsample_factor
        if any(side % spatial for side in self.frame_size):
            what = "a multiple" if isinstance(self.image_size, int) else "sides that are multiples"
            raise _err("image_size", self.image_size, f"{what} of the VAE factor {spatial}")
        if self.num_eval_registers is not None:
            _check_positive_int("num_eval_registers", self.num_eval_registers)
            if self.num_eval_registers > self.num_registers:
                raise _err("num_eval_registers", self.num_eval_registers, f"<= num_registers={self.num_registers}")
        if not self.fsq_levels or any(not isinstance(level, int) or level < 2 for level in self.fsq_levels):
            raise _err("fsq_levels", self.fsq_levels, "a non-empty list of integers >= 2")
        if self.codebook_size > 2**31:
            raise _err("fsq_levels", self.fsq_levels, "a codebook of at most 2**31 entries")
        for side in ("encoder", "decoder"):
            hidden = getattr(self, f"{side}_hidden_size")
            head_dim = getattr(self, f"{side}_head_dim")
            if hidden % head_dim:
                raise _err(f"{side}_head_dim", head_dim, f"a divisor of {side}_hidden_size={hidden}")
            if getattr(self, f"{side}_mlp_ratio") <= 0:
                raise _err(f"{side}_mlp_ratio", getattr(self, f"{side}_mlp_ratio"), "a positive number")
            patch = getattr(self, f"{side}_patch_size")
            if len(patch) != 3 or any(not isinstance(p, int) or p < 1 for p in patch):
                raise _err(f"{side}_patch_size", patch, "three positive integers (time, height, width)")
            if self.latent_frames_per_chunk % patch[0]:
                raise _err(
                    f"{side}_patch_size", patch, f"a time patch dividing {self.latent_frames_per_chunk} latent frames"
                )
            grid = self.latent_grid
            if grid[0] % patch[1] or grid[1] % patch[2]:
                size = grid[0] if grid[0] == grid[1] else list(grid)
                raise _err(f"{side}_patch_size", patch, f"spatial patches dividing the latent size {size}")
            _check_position_embedding(
                f"{side}_patch_position_embedding", getattr(self, f"{side}_patch_position_embedding"), 3
            )
            register_table = getattr(self, f"{side}_register_position_embedding")
            _check_position_embedding(f"{side}_register_position_embedding", register_table, 2)
            if register_table and register_table["scaling"] == "absolute" and (
                register_table["max_sizes"][1] < self.num_registers
            ):
                # the table is cropped to (steps, registers) at run time: it must hold every register
                raise _err(f"{side}_register_position_embedding['max_sizes']", register_table["max_sizes"],
                           f"a register axis of at least num_registers={self.num_registers}")
            mask = getattr(self, f"{side}_attention_mask")
            if mask not in ATTENTION_MASK_MODES:
                raise _err(f"{side}_attention_mask", mask, f"one of {ATTENTION_MASK_MODES}")
            cross = getattr(self, f"{side}_cross_timestep_attention")
            if mask == "flexible_time_block_causal_last":
                if not isinstance(cross, dict) or set(cross) != set(CROSS_TIMESTEP_KEYS):
                    raise _err(f"{side}_cross_timestep_attention", cross, f"a dict with keys {CROSS_TIMESTEP_KEYS}")
                for key in CROSS_TIMESTEP_KEYS:
                    allowed = ("full", "none", "causal") if key == "nonprefix2nonprefix" else ("full", "none")
                    if cross[key] not in allowed:
                        raise _err(f"{side}_cross_timestep_attention['{key}']", cross[key], f"one of {allowed}")
            elif cross is not None:
                raise _err(f"{side}_cross_timestep_attention", cross, f"None unless {side}_attention_mask is flexible")
            order = list(getattr(self, f"{side}_token_order"))
            if sorted(order) != sorted(TOKEN_PARTS):
                raise _err(f"{side}_token_order", order, "a permutation of ['patches', 'registers']")
        ops = list(self.decoder_register_ops)
        if len(set(ops)) != len(ops) or not set(ops) <= set(DECODER_REGISTER_OPS):
            raise _err("decoder_register_ops", ops, f"distinct entries of {DECODER_REGISTER_OPS}")
        if ("position_embedding" in ops) != (self.decoder_register_position_embedding is not None):
            raise _err(
                "decoder_register_ops",
                ops,
                "'position_embedding' listed exactly when decoder_register_position_embedding is set",
            )
        if self.decoder_adaln_expansion != len(TOKEN_PARTS):
            raise _err(
                "decoder_adaln_expansion", self.decoder_adaln_expansion, "2 (one modulation per token part)"
            )
        if self.time_embedding_max_period <= 0 or self.time_embedding_max_timestep <= 0:
            raise _err("time_embedding_max_timestep", self.time_embedding_max_timestep, "positive time-embedding scales")
        if self.nested_dropout_sampling not in NESTED_DROPOUT_SAMPLING:
            raise _err("nested_dropout_sampling", self.nested_dropout_sampling, f"one of {NESTED_DROPOUT_SAMPLING}")
        if not 0.0 <= self.null_condition_dropout_prob <= 1.0:
            raise _err("null_condition_dropout_prob", self.null_condition_dropout_prob, "a probability in [0, 1]")
        if len(self.prefix_lengths) != len(self.prefix_probabilities) or not self.prefix_lengths:
            raise _err("prefix_probabilities", self.prefix_probabilities, "one probability per prefix length")
        if abs(sum(self.prefix_probabilities) - 1.0) > 1e-6 or any(p < 0 for p in self.prefix_probabilities):
            raise _err("prefix_probabilities", self.prefix_probabilities, "non-negative values summing to 1")
        if any(not isinstance(p, int) or not 0 <= p < self.latent_frames_per_chunk for p in self.prefix_lengths):
            raise _err("prefix_lengths", self.prefix_lengths, f"integers in [0, {self.latent_frames_per_chunk})")
        low, high = self.prefix_noise_range
        if not 0.0 <= low <= high <= 1.0:
            raise _err("prefix_noise_range", self.prefix_noise_range, "0 <= low <= high <= 1")
        if not 0.0 <= self.prefix_noise_probability <= 1.0:
            raise _err("prefix_noise_probability", self.prefix_noise_probability, "a probability in [0, 1]")
