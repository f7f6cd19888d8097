"""VideoFlexTok: a coarse-to-fine video tokenizer with a rectified-flow decoder.

Data flow for one 17-frame chunk (released 256x256 model):

    video [B, 3, 17, 256, 256]
      -> VidTok VAE (frozen)            latents [B, 16, 5, 32, 32]
      -> encoder transformer            per time step: 16x16 patch tokens + 256 learned registers
      -> FSQ on the register outputs    token ids [B, 5, 256], coarse to fine along the last axis
    token ids (any prefix k of each step's tokens)
      -> decoder transformer            predicts the flow velocity v = noise - x0 for noisy latents x_t
      -> Euler sampling (pipeline)      latents -> VidTok decode -> video

Long videos are processed as chunks of `chunk_size` frames overlapping by `overlap_size_frames` frames
(T = 1 + 16K frames -> t = 1 + 4K token steps for the released models).
"""

from __future__ import annotations

import ctypes
import errno
import importlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_videoflextok import VideoFlexTokConfig
from .fsq import FiniteScalarQuantizer
from .patchify import DCTCompressor, PatchifyCompressor
from .transformer import (
    PatchEmbed3D,
    PositionEmbedding,
    TimestepEmbedding,
    TransformerBlock,
    build_attention_layout,
    layer_norm_fp32,
    modulate,
    unpatchify,
)
from .vidtok import VidTokVAE


# `from_pretrained` names that resolve to the tiny model shipped inside the `videoflextok_hf` package
DEFAULT_MODEL_ALIASES = ("videoflextok-tiny", "videoflextok_hf/tiny")


def _exchange_paths(first: Path, second: Path) -> bool:
    """Atomically swap two paths (Linux `renameat2(RENAME_EXCHANGE)`); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # old kernel or a file system without exchange
        return False
    raise OSError(code, os.strerror(code), str(second))


@dataclass
class VideoFlexTokEncoderOutput(ModelOutput):
    """
    Args:
        token_ids (`torch.LongTensor` of shape `[B, t, N]`): FSQ token ids, coarse to fine along the last axis.
        codes (`torch.FloatTensor` of shape `[B, t, N, fsq_dim]`): the quantized codes in [-1, 1] (straight-through
            gradients to the encoder when training).
        latents (`torch.FloatTensor` of shape `[B, t, N, fsq_dim]`): encoder outputs before quantization.
        vae_latents (`torch.FloatTensor` of shape `[B, C, t, h, w]`): the VAE latents the tokens describe, chunks
            stitched like the tokens.
    """

    token_ids: torch.LongTensor | None = None
    codes: torch.FloatTensor | None = None
    latents: torch.FloatTensor | None = None
    vae_latents: torch.FloatTensor | None = None


def _ordered_parts(order, patches: torch.Tensor, registers: torch.Tensor) -> list[torch.Tensor]:
    parts = {"patches": patches, "registers": registers}
    return [parts[name] for name in order]


class LinearHead(nn.Module):
    """Optional parameter-free LayerNorm, optional adaLN (shift, scale per sample), then a linear projection."""

    def __init__(self, dim: int, out_dim: int, norm: bool, bias: bool, adaln: bool = False, adaln_bias: bool = True):
        super().__init__()
        self.norm = norm
        self.modulation = nn.Linear(dim, 2 * dim, bias=adaln_bias) if adaln else None
        self.proj = nn.Linear(dim, out_dim, bias=bias)

    def forward(self, x: torch.Tensor, conditioning: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm:
            x = layer_norm_fp32(x)
        if self.modulation is not None:
            shift, scale = self.modulation(conditioning).chunk(2, dim=-1)
            view = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
            x = modulate(x, shift.view(view), scale.view(view))
        return self.proj(x)


def _position_embedding(dim: int, spec: dict | None) -> PositionEmbedding | None:
    if spec is None:
        return None
    return PositionEmbedding(dim, spec["type"], spec["max_sizes"], spec["scaling"])


class VideoFlexTokEncoder(nn.Module):
    """VAE latents of a chunk -> FSQ inputs for every register of every time step.

    Per time step the sequence holds the patch tokens and that step's own learned registers; the attention mask
    (by default `time_block_causal_last`) makes the encoder causal in time and the registers causal among
    themselves, which is what orders them coarse to fine.
    """

    def __init__(self, config: VideoFlexTokConfig):
        super().__init__()
        self.config = config
        dim = config.encoder_hidden_size
        self.patch_embed = PatchEmbed3D(config.vae_latent_channels, dim, config.encoder_patch_size)
        self.patch_pos_embed = _position_embedding(dim, config.encoder_patch_position_embedding)
        self.registers = nn.Parameter(torch.zeros(config.register_max_frames, config.num_registers, dim))
        self.register_pos_embed = _position_embedding(dim, config.encoder_register_position_embedding)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                config,
                dim,
                config.encoder_head_dim,
                config.encoder_mlp_ratio,
                config.encoder_gated_mlp,
                config.encoder_qk_norm,
                config.encoder_qkv_bias,
                config.encoder_proj_bias,
                config.encoder_mlp_bias,
            )
            for _ in range(config.encoder_num_layers)
        )
        self.fsq_head = LinearHead(dim, config.fsq_dim, config.encoder_head_norm, config.encoder_head_bias)

    def forward(self, vae_latents: torch.Tensor) -> torch.Tensor:
        """`vae_latents [B, C, t, h, w]` -> FSQ inputs `[B, t / pt, N_eval, fsq_dim]`."""
        config = self.config
        patches = self.patch_embed(vae_latents.permute(0, 2, 3, 4, 1))
        batch, steps, height, width, dim = patches.shape
        if self.patch_pos_embed is not None:
            patches = patches + self.patch_pos_embed((steps, height, width))
        if steps > self.registers.shape[0]:
            raise ValueError(
                f"the encoder has learned registers for {self.registers.shape[0]} time steps, got {steps}; "
                "chunks must not exceed the configured chunk size."
            )
        registers = self.registers[:steps, : config.eval_registers].expand(batch, -1, -1, -1)
        if self.register_pos_embed is not None:
            registers = registers + self.register_pos_embed(registers.shape[1:3])
        patches = patches.reshape(batch, steps, height * width, dim)
        parts = _ordered_parts(config.encoder_token_order, patches, registers)
        hidden = torch.cat(parts, dim=2)
        mask = None
        if config.encoder_attention_mask != "full":
            mask = build_attention_layout(
                config.encoder_attention_mask,
                steps,
                [part.shape[2] for part in parts],
                config.encoder_cross_timestep_attention,
                hidden.device,
            )
        for block in self.blocks:
            hidden = block(hidden, mask)
        split = hidden.split([part.shape[2] for part in parts], dim=2)
        registers_out = split[list(config.encoder_token_order).index("registers")]
        return self.fsq_head(registers_out)


@lru_cache(maxsize=16)
def _slot_of_position(part_sizes: tuple[int, ...], device: str) -> torch.Tensor:
    """Which adaLN slot (token part) each token position of a time step uses; cached per shape and device so the
    sampling loop makes no host-to-device copy."""
    slots = torch.repeat_interleave(torch.arange(len(part_sizes)), torch.tensor(part_sizes))
    return slots.to(device)


class VideoFlexTokDecoder(nn.Module):
    """Rectified-flow decoder: predicts the velocity `noise - x0` of noisy VAE latents given register codes.

    Registers go through the configured pipeline (in order): position embedding, nested dropout (a learned mask
    token replaces registers >= k of every step), prefix masking (a learned token replaces the registers of the
    first `p` clean conditioning steps) and the null condition (a learned token replaces all registers for the
    unconditional pass of classifier-free guidance). The flow time drives adaLN with separate modulations for
    patch and register tokens.
    """

    def __init__(self, config: VideoFlexTokConfig):
        super().__init__()
        self.config = config
        dim = config.decoder_hidden_size
        ops = config.decoder_register_ops
        self.register_embed = nn.Linear(config.fsq_dim, dim, bias=config.decoder_register_embed_bias)
        self.register_pos_embed = _position_embedding(dim, config.decoder_register_position_embedding)
        self.register_mask_token = nn.Parameter(torch.zeros(dim)) if "nested_dropout" in ops else None
        self.prefix_mask_token = nn.Parameter(torch.zeros(dim)) if "prefix_masking" in ops else None
        self.null_condition = nn.Parameter(torch.zeros(dim)) if "null_condition" in ops else None
        self.patch_embed = PatchEmbed3D(config.vae_latent_channels, dim, config.decoder_patch_size)
        self.patch_pos_embed = _position_embedding(dim, config.decoder_patch_position_embedding)
        self.time_embed = TimestepEmbedding(
            dim,
            config.time_embedding_frequency_size,
            config.time_embedding_max_period,
            config.time_embedding_max_timestep,
        )
        self.blocks = nn.ModuleList(
            TransformerBlock(
                config,
                dim,
                config.decoder_head_dim,
                config.decoder_mlp_ratio,
                config.decoder_gated_mlp,
                config.decoder_qk_norm,
                config.decoder_qkv_bias,
                config.decoder_proj_bias,
                config.decoder_mlp_bias,
            )
            for _ in range(config.decoder_num_layers)
        )
        # one adaLN projection per block; slot e of its output modulates token part e (patches / registers)
        self.block_modulations = nn.ModuleList(
            nn.Linear(dim, config.decoder_adaln_expansion * 6 * dim) for _ in range(config.decoder_num_layers)
        )
        out_dim = config.vae_latent_channels * config.decoder_patch_size[0]
        out_dim *= config.decoder_patch_size[1] * config.decoder_patch_size[2]
        self.head = LinearHead(
            dim,
            out_dim,
            config.decoder_head_norm,
            config.decoder_head_bias,
            adaln=True,
            adaln_bias=config.decoder_head_adaln_bias,
        )

    def embed_registers(
        self,
        codes: torch.Tensor,
        num_tokens: torch.LongTensor,
        prefix_frames: torch.LongTensor,
        unconditional: torch.BoolTensor,
    ) -> torch.Tensor:
        """`codes [B, t, N, fsq_dim]` -> register tokens `[B, t, N, D]` after the configured register ops."""
        registers = self.register_embed(codes)
        batch, steps, count, _ = registers.shape
        for op in self.config.decoder_register_ops:
            if op == "position_embedding":
                registers = registers + self.register_pos_embed((steps, count))
            elif op == "nested_dropout":
                dropped = torch.arange(count, device=codes.device)[None, :] >= num_tokens[:, None]
                registers = torch.where(dropped[:, None, :, None], self.register_mask_token, registers)
            elif op == "prefix_masking":
                masked = torch.arange(steps, device=codes.device)[None, :] < prefix_frames[:, None]
                registers = torch.where(masked[:, :, None, None], self.prefix_mask_token, registers)
            elif op == "null_condition":
                registers = torch.where(unconditional[:, None, None, None], self.null_condition, registers)
        return registers

    def forward(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        codes: torch.Tensor,
        num_tokens: torch.LongTensor,
        prefix_frames: torch.LongTensor,
        unconditional: torch.BoolTensor,
    ) -> torch.Tensor:
        config = self.config
        registers = self.embed_registers(codes, num_tokens, prefix_frames, unconditional)
        patches = self.patch_embed(noisy_latents.permute(0, 2, 3, 4, 1))
        batch, steps, height, width, dim = patches.shape
        if self.patch_pos_embed is not None:
            patches = patches + self.patch_pos_embed((steps, height, width))
        patches = patches.reshape(batch, steps, height * width, dim)
        parts = _ordered_parts(config.decoder_token_order, patches, registers)
        part_sizes = [part.shape[2] for part in parts]
        hidden = torch.cat(parts, dim=2)
        mask = None
        if config.decoder_attention_mask != "full":
            mask = build_attention_layout(
                config.decoder_attention_mask, steps, part_sizes, config.decoder_cross_timestep_attention, hidden.device
            )
        conditioning = F.silu(self.time_embed(timesteps))
        slot_of_position = _slot_of_position(tuple(part_sizes), str(hidden.device))
        for block, block_modulation in zip(self.blocks, self.block_modulations):
            modulation = block_modulation(conditioning).view(batch, len(parts), 6 * dim)
            modulation = modulation.index_select(1, slot_of_position).unsqueeze(1)
            hidden = block(hidden, mask, modulation)
        patches_out = hidden.split(part_sizes, dim=2)[list(config.decoder_token_order).index("patches")]
        patches_out = patches_out.reshape(batch, steps, height, width, dim)
        out = self.head(patches_out, conditioning)
        out = unpatchify(out, config.decoder_patch_size, config.vae_latent_channels)
        return out.permute(0, 4, 1, 2, 3).contiguous()


def build_compressor(config: VideoFlexTokConfig) -> nn.Module:
    """The module under the tokenizer that `config.compressor` names: the VidTok VAE or a parameter-free stand-in."""
    if config.compressor == "patchify":
        return PatchifyCompressor(
            config.vae_in_channels, config.vae_temporal_downsample_factor, config.vae_spatial_downsample_factor
        )
    if config.compressor == "dct":
        return DCTCompressor(
            config.vae_in_channels, config.vae_temporal_downsample_factor, config.vae_spatial_downsample_factor,
            config.dct_coefficients_per_color, config.dct_normalization,
        )
    return VidTokVAE(
        in_channels=config.vae_in_channels,
        out_channels=config.vae_in_channels,
        base_channels=config.vae_base_channels,
        channel_multipliers=tuple(config.vae_channel_multipliers),
        num_res_blocks=config.vae_num_res_blocks,
        latent_channels=config.vae_latent_channels,
        temporal_downsample_factor=config.vae_temporal_downsample_factor,
    )


class VideoFlexTokPreTrainedModel(PreTrainedModel):
    config_class = VideoFlexTokConfig
    config: VideoFlexTokConfig
    base_model_prefix = "videoflextok"
    main_input_name = "pixel_values_videos"
    input_modalities = ("video",)
    _no_split_modules = ["TransformerBlock"]
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Training-from-scratch init (the official SP scheme): xavier linears, zero biases, zero adaLN and output
        projections, N(0, 0.02) learned tokens and tables. Loaded checkpoints overwrite all of it."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            super()._init_weights(module)
        elif isinstance(module, PositionEmbedding) and module.kind != "sincos":
            init.trunc_normal_(module.weight, std=std)
        elif isinstance(module, VideoFlexTokEncoder):
            # the official init zeroes the FSQ head; a random one (xavier, from the Linear case) gives distinct
            # codes from step 0, which small training budgets need (measured: a zeroed head still emitted only 4
            # distinct ids after 400 steps of the tiny model)
            init.trunc_normal_(module.registers, std=std)
        elif isinstance(module, VideoFlexTokDecoder):
            for token in (module.register_mask_token, module.prefix_mask_token, module.null_condition):
                if token is not None:
                    init.trunc_normal_(token, std=std)
            for linear in list(module.block_modulations) + [module.head.modulation, module.head.proj]:
                init.zeros_(linear.weight)
                if linear.bias is not None:
                    init.zeros_(linear.bias)


class VideoFlexTokModel(VideoFlexTokPreTrainedModel):
    """The VideoFlexTok tokenizer: VidTok VAE + encoder + FSQ + rectified-flow decoder.

    Use `encode` to tokenize videos and `predict_velocity` for one decoder evaluation on one chunk; full decoding
    (sampling, guidance, long videos) lives in `VideoFlexTokPipeline` / `detokenize`.
    """

    def __init__(self, config: VideoFlexTokConfig):
        super().__init__(config)
        self.vae = build_compressor(config)
        self.vae.requires_grad_(False)  # the VAE is frozen: never trained, always run without gradients
        self.encoder = VideoFlexTokEncoder(config)
        self.quantizer = FiniteScalarQuantizer(config.fsq_levels)
        self.decoder = VideoFlexTokDecoder(config)
        self.post_init()

    # ---------------------------------------------------------------------------------------------------------
    # geometry helpers
    @property
    def tokens_per_chunk(self) -> int:
        return self.config.latent_frames_per_chunk // self.config.encoder_patch_size[0]

    @property
    def overlap_tokens(self) -> int:
        return self.config.overlap_size_latent_frames // self.config.encoder_patch_size[0]

    def num_chunks_for_frames(self, num_frames: int) -> int:
        """Number of chunks of a video with `num_frames` frames; raises if the count does not fit the chunking."""
        config = self.config
        stride = config.frame_stride if config.overlap_size_frames else config.chunk_size
        extra = num_frames - config.chunk_size
        if num_frames < config.chunk_size or extra % stride:
            if config.overlap_size_frames:
                rule = f"{config.chunk_size} + {stride}*K (K >= 0)"
            else:
                rule = f"a multiple of {config.chunk_size}"
            valid = [config.chunk_size + stride * k for k in range(3)]
            raise ValueError(
                f"videos must have {rule} frames (e.g. {valid}), got T={num_frames}. Resample or trim the video, "
                "e.g. with `videoflextok_hf.data.read_video(..., num_frames=...)`."
            )
        return extra // stride + 1

    def num_chunks_for_token_steps(self, num_steps: int) -> int:
        per_chunk, overlap = self.tokens_per_chunk, self.overlap_tokens
        stride = per_chunk - overlap
        if num_steps < per_chunk or (num_steps - per_chunk) % stride:
            valid = [per_chunk + stride * k for k in range(3)]
            raise ValueError(
                f"token sequences must have {per_chunk} + {stride}*K time steps (e.g. {valid}), got t={num_steps}."
            )
        return (num_steps - per_chunk) // stride + 1

    # ---------------------------------------------------------------------------------------------------------
    # input validation
    def check_videos(self, videos: torch.Tensor, name: str = "videos", frame_rule: bool = True) -> None:
        config = self.config
        if not isinstance(videos, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor [B, 3, T, H, W], got {type(videos).__name__}.")
        if videos.dim() != 5:
            raise ValueError(f"{name} must have shape [B, 3, T, H, W], got {tuple(videos.shape)} ({videos.dim()}-D).")
        if videos.shape[0] == 0:
            raise ValueError(f"{name} is an empty batch (shape {tuple(videos.shape)}); pass at least one video.")
        if videos.shape[1] != config.vae_in_channels:
            raise ValueError(
                f"{name} must have {config.vae_in_channels} channels in dim 1 ([B, C, T, H, W]), got shape "
                f"{tuple(videos.shape)}. Channels-last input needs `.permute(0, 4, 1, 2, 3)`."
            )
        if not videos.dtype.is_floating_point:
            raise TypeError(
                f"{name} must be a floating-point tensor in [-1, 1], got dtype {videos.dtype}. "
                "Convert uint8 frames with `frames.float() / 127.5 - 1`."
            )
        if videos.device != self.device:
            raise ValueError(
                f"{name} are on {videos.device} but the model is on {self.device}; move them with "
                f"`{name}.to(model.device)`."
            )
        height, width = videos.shape[-2:]
        factor = config.vae_spatial_downsample_factor
        multiple = factor * max(config.encoder_patch_size[1], config.encoder_patch_size[2], config.decoder_patch_size[1])
        if height % multiple or width % multiple:
            raise ValueError(f"{name} height and width must be multiples of {multiple}, got {height}x{width}.")
        if videos.numel():
            low, high = float(videos.min()), float(videos.max())
            if not (-1.001 <= low and high <= 1.001) or low != low or high != high:
                raise ValueError(
                    f"{name} values must lie in [-1, 1], got range [{low:.4g}, {high:.4g}]. "
                    "Normalise frames in [0, 1] with `x * 2 - 1` (uint8: `x / 127.5 - 1`)."
                )
        if frame_rule:
            self.num_chunks_for_frames(videos.shape[2])

    def split_into_chunks(self, videos: torch.Tensor) -> torch.Tensor:
        """`[B, C, T, H, W]` -> `[B * num_chunks, C, chunk_size, H, W]` (sample-major, chunks in time order)."""
        num_chunks = self.num_chunks_for_frames(videos.shape[2])
        stride = self.config.frame_stride if self.config.overlap_size_frames else self.config.chunk_size
        chunks = [videos[:, :, i * stride : i * stride + self.config.chunk_size] for i in range(num_chunks)]
        return torch.stack(chunks, dim=1).flatten(0, 1)

    def stitch_chunks(self, per_chunk: torch.Tensor, batch: int, time_dim: int, overlap: int) -> torch.Tensor:
        """Inverse of the chunking for per-chunk outputs: drop the first `overlap` steps of every chunk but the
        first along `time_dim` and concatenate."""
        chunks = per_chunk.unflatten(0, (batch, -1)).unbind(1)
        pieces = [chunks[0]] + [chunk.narrow(time_dim, overlap, chunk.shape[time_dim] - overlap) for chunk in chunks[1:]]
        return torch.cat(pieces, dim=time_dim)

    @property
    def vae_dtype(self) -> torch.dtype:
        """The dtype the VAE runs in. It may differ from the transformers' (e.g. `model.vae.to(torch.bfloat16)`
        on a CPU with bf16 matrix units); the parameter-free compressors follow the transformers."""
        return getattr(self.vae, "dtype", None) or self.encoder.registers.dtype

    # ---------------------------------------------------------------------------------------------------------
    # tokenization
    def encode(
        self,
        videos: torch.Tensor,
        sample_posterior: bool = False,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> VideoFlexTokEncoderOutput | tuple:
        """Tokenize videos.

        Args:
            videos (`torch.FloatTensor` `[B, 3, T, H, W]` in [-1, 1]): T = chunk_size + K * (chunk_size - overlap)
                (1 + 16K for the released models).
            sample_posterior (`bool`): draw the VAE latents from the posterior as the official code does (its
                tokenization is stochastic) instead of using the posterior mean (default, deterministic).
            generator (`torch.Generator`, *optional*): RNG for the posterior sample; without it the global RNG is
                used (which reproduces the official code under `torch.manual_seed`). One draw covers all chunks of
                all videos, sample-major.

        Returns:
            [`VideoFlexTokEncoderOutput`] with `token_ids [B, t, N]`, t = 1 + 4K for the released models.
        """
        self.check_videos(videos)
        batch = videos.shape[0]
        chunks = self.split_into_chunks(videos.to(self.vae_dtype))
        with torch.no_grad():
            posterior = self.vae.encode(chunks).latent_dist
            vae_latents = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        latents = self.encoder(vae_latents.to(self.encoder.registers.dtype))
        codes, token_ids = self.quantizer(latents)
        overlap = self.overlap_tokens
        output = VideoFlexTokEncoderOutput(
            token_ids=self.stitch_chunks(token_ids, batch, 1, overlap),
            codes=self.stitch_chunks(codes, batch, 1, overlap),
            latents=self.stitch_chunks(latents, batch, 1, overlap),
            vae_latents=self.stitch_chunks(vae_latents, batch, 2, self.config.overlap_size_latent_frames),
        )
        return output if return_dict else output.to_tuple()

    def forward(
        self,
        pixel_values_videos: torch.Tensor,
        sample_posterior: bool = False,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> VideoFlexTokEncoderOutput | tuple:
        """Same as [`~VideoFlexTokModel.encode`]: videos -> tokens."""
        return self.encode(pixel_values_videos, sample_posterior, generator, return_dict)

    # ---------------------------------------------------------------------------------------------------------
    # conveniences living in the full package (the Hub remote-code copy of this file has no access to them)
    @staticmethod
    def _package_module(name: str):
        try:
            return importlib.import_module(f"videoflextok_hf.{name}")
        except ImportError as error:
            raise ImportError(
                f"this needs the `videoflextok_hf` package (`pip install videoflextok-hf`): {error}"
            ) from error

    def compile_blocks(self, **compile_kwargs) -> "VideoFlexTokModel":
        """Regional compilation (diffusers' `compile_repeated_blocks` pattern): `torch.compile` every transformer
        block of the encoder and the decoder in place, instead of the whole model. The blocks are identical, so one
        compiled graph serves all of them (compile time of one block, not of the model), and the code around them
        (chunking, sampling loop, VAE) stays eager. Opt-in; keyword arguments go to `torch.compile` (default
        `dynamic=False`: shapes are fixed per chunk). The first call per shape pays the compilation (measured in
        benchmarks/README.md). Returns the model."""
        compile_kwargs = {"dynamic": False, **compile_kwargs}
        for block in list(self.encoder.blocks) + list(self.decoder.blocks):
            block.compile(**compile_kwargs)
        return self

    def detokenize(self, token_ids: torch.LongTensor, **kwargs):
        """Decode token ids into videos: a thin convenience over [`VideoFlexTokPipeline`] with the default
        scheduler; takes the pipeline's arguments (`num_tokens`, `num_inference_steps`, `guidance_scale`,
        `guidance`, `generator`, `output_type`, ...) and returns its output."""
        pipeline = self._package_module("pipeline")
        pipe = pipeline.VideoFlexTokPipeline(model=self, scheduler=pipeline.VideoFlexTokFlowMatchScheduler())
        return pipe(token_ids, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, made crash-safe.

        Everything is written to a temporary folder next to `save_directory`; files of the existing folder that the
        new save does not write (a model card, other configs) are linked into it, except stale weight files; then the
        two folders are swapped with one atomic `renameat2(RENAME_EXCHANGE)`. An interrupted or killed save
        therefore leaves the complete old folder or the complete new one, never a mix (e.g. a new config.json with
        old weights). Where the kernel has no exchange (not Linux) files are moved one by one, each atomically.
        """
        target = Path(save_directory)
        if target.exists() and not target.is_dir():
            raise ValueError(f"save_directory {target} is a file; pass a folder.")
        if kwargs.get("push_to_hub"):
            kwargs.setdefault("repo_id", target.name)  # the Hub repo is named after the real folder, not the staging one
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".tmp-{target.name}-"))
        try:
            result = super().save_pretrained(staging, *args, **kwargs)
            written = {p.relative_to(staging) for p in staging.rglob("*") if p.is_file()}
            if target.is_dir():
                for path in target.rglob("*"):
                    name = path.relative_to(target)
                    if path.is_file() and name not in written and not name.name.startswith("model"):
                        (staging / name).parent.mkdir(parents=True, exist_ok=True)
                        try:
                            os.link(path, staging / name)
                        except OSError:
                            shutil.copy2(path, staging / name)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes owner-only folders
            if not target.exists():
                os.rename(staging, target)
            elif not _exchange_paths(staging, target):
                for name in sorted(written):
                    (target / name).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staging / name, target / name)
                for stale in target.glob("model*.safetensors*"):
                    if stale.relative_to(target) not in written:
                        stale.unlink()
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # after an exchange: the old folder
        return result

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs) -> "VideoFlexTokModel":
        """`PreTrainedModel.from_pretrained`, plus: the alias `"videoflextok-tiny"` loads the tiny default model
        bundled with the `videoflextok_hf` package (stored in float16 to stay small; loaded in float32 unless `dtype`
        says otherwise), and unreadable weight files raise an error that names them."""
        if str(pretrained_model_name_or_path) in DEFAULT_MODEL_ALIASES:
            pretrained_model_name_or_path = cls._package_module("default_model").default_model_path()
            kwargs.setdefault("dtype", torch.float32)
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except Exception as error:
            if type(error).__name__ != "SafetensorError":
                raise
            raise OSError(
                f"{pretrained_model_name_or_path}: model.safetensors could not be read ({error}). The file is "
                "truncated or corrupt: download it again (`force_download=True`) or re-run `save_pretrained`."
            ) from None

    @classmethod
    def from_original(cls, path_or_repo_id, **kwargs) -> "VideoFlexTokModel":
        """Load an official VideoFlexTok checkpoint (hub repo id or folder with its hydra `config.json` and
        `model.safetensors`) with strict key checks; see `videoflextok_hf.conversion.load_original`."""
        return cls._package_module("conversion").load_original(path_or_repo_id, **kwargs)

    # ---------------------------------------------------------------------------------------------------------
    # decoder
    def _per_sample(self, value, batch: int, name: str, dtype: torch.dtype, device) -> torch.Tensor:
        tensor = torch.as_tensor(value, device=device)
        if tensor.dim() == 0:
            tensor = tensor.expand(batch)
        if tensor.shape != (batch,):
            raise ValueError(f"{name} must be a scalar or one value per sample ({batch}), got shape {tuple(tensor.shape)}.")
        if dtype == torch.bool:
            if tensor.dtype != torch.bool:
                raise TypeError(f"{name} must be a bool or a bool tensor, got dtype {tensor.dtype}.")
        elif tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
            raise TypeError(f"{name} must be integers, got dtype {tensor.dtype}.")
        return tensor.to(dtype)

    def predict_velocity(
        self,
        noisy_latents: torch.Tensor,
        timestep: float | torch.Tensor,
        token_ids: torch.LongTensor,
        num_tokens: int | list[int] | torch.Tensor | None = None,
        prefix_frames: int | list[int] | torch.Tensor = 0,
        unconditional: bool | list[bool] | torch.Tensor = False,
    ) -> torch.Tensor:
        """One decoder evaluation on one chunk: the flow velocity `noise - x0` at time `timestep`.

        Args:
            noisy_latents (`torch.FloatTensor` `[B, C, t, h, w]`): x_t = t * noise + (1 - t) * x0.
            timestep (`float` or `torch.Tensor` `[]` / `[B]`): flow time in (0, max_timestep]; 1 is pure noise.
            token_ids (`torch.LongTensor` `[B, t, n]`, n <= N): token ids of the chunk.
            num_tokens (`int`, list or tensor `[B]`, *optional*): keep the first k tokens of every step (the rest is
                replaced by the learned mask token); defaults to n.
            prefix_frames (`int`, list or tensor `[B]`): the first p time steps hold clean conditioning latents;
                their registers are replaced by the learned prefix token.
            unconditional (`bool`, list or tensor `[B]`): null-condition pass for classifier-free guidance.

        Returns:
            `torch.FloatTensor` `[B, C, t, h, w]`.
        """
        config = self.config
        if not isinstance(noisy_latents, torch.Tensor) or noisy_latents.dim() != 5:
            shape = tuple(noisy_latents.shape) if isinstance(noisy_latents, torch.Tensor) else type(noisy_latents)
            raise ValueError(f"noisy_latents must have shape [B, C, t, h, w], got {shape}.")
        if not noisy_latents.dtype.is_floating_point:
            raise TypeError(f"noisy_latents must be floating point, got {noisy_latents.dtype}.")
        batch, channels, steps, height, width = noisy_latents.shape
        if channels != config.vae_latent_channels:
            raise ValueError(f"noisy_latents must have {config.vae_latent_channels} channels, got {channels}.")
        pt, ph, pw = config.decoder_patch_size
        if steps % pt or height % ph or width % pw:
            raise ValueError(f"noisy_latents grid {(steps, height, width)} is not divisible by the patch size {(pt, ph, pw)}.")
        if not isinstance(token_ids, torch.Tensor) or token_ids.dim() != 3:
            raise ValueError(f"token_ids must be a LongTensor [B, t, n], got {getattr(token_ids, 'shape', token_ids)}.")
        if noisy_latents.device != self.device or token_ids.device != self.device:
            raise ValueError(
                f"noisy_latents ({noisy_latents.device}) and token_ids ({token_ids.device}) must be on the model's "
                f"device ({self.device}); move them with `.to(model.device)`."
            )
        if token_ids.shape[0] != batch or token_ids.shape[1] != steps // pt:
            raise ValueError(
                f"token_ids {tuple(token_ids.shape)} do not match noisy_latents {tuple(noisy_latents.shape)}: "
                f"expected [{batch}, {steps // pt}, n]."
            )
        count = token_ids.shape[2]
        if not 1 <= count <= config.num_registers:
            raise ValueError(f"token_ids must hold 1..{config.num_registers} tokens per step, got {count}.")
        device = noisy_latents.device
        keep = self._per_sample(count if num_tokens is None else num_tokens, batch, "num_tokens", torch.long, device)
        if (keep < 1).any() or (keep > count).any():
            raise ValueError(f"num_tokens must lie in 1..{count} (tokens given per step), got {keep.tolist()}.")
        if (keep < config.num_registers).any() and self.decoder.register_mask_token is None:
            raise ValueError("this model has no nested-dropout mask token, so it can only decode all tokens.")
        prefix = self._per_sample(prefix_frames, batch, "prefix_frames", torch.long, device)
        if (prefix < 0).any() or (prefix >= steps // pt).any():
            raise ValueError(f"prefix_frames must lie in [0, {steps // pt}), got {prefix.tolist()}.")
        uncond = self._per_sample(unconditional, batch, "unconditional", torch.bool, device)
        if uncond.any() and self.decoder.null_condition is None:
            raise ValueError("this model has no learned null condition, so it cannot run the unconditional pass.")
        timesteps = torch.as_tensor(timestep, device=device, dtype=torch.float32)
        if timesteps.dim() == 0:
            timesteps = timesteps.expand(batch)
        if timesteps.shape != (batch,):
            raise ValueError(f"timestep must be a scalar or have shape [{batch}], got {tuple(timesteps.shape)}.")
        if (timesteps < 0).any() or (timesteps > config.time_embedding_max_timestep).any():
            raise ValueError(
                f"timestep must lie in [0, {config.time_embedding_max_timestep}], got {timesteps.tolist()}."
            )
        codes = self.quantizer.ids_to_codes(token_ids)
        if count < config.num_registers:
            # tokens beyond n are masked anyway (keep <= n); pad the grid to the full register count
            codes = F.pad(codes, (0, 0, 0, config.num_registers - count))
        dtype = self.decoder.register_embed.weight.dtype
        return self.decoder(noisy_latents.to(dtype), timesteps, codes.to(dtype), keep, prefix, uncond)
