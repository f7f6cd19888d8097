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

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .chunking import ChunkGeometry
from .configuration_videoflextok import VideoFlexTokConfig
from .fsq import FiniteScalarQuantizer
from .patchify import DCTCompressor, PatchifyCompressor
from .transformer import (
    AttentionLayout,
    Linear,
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


def _block_layouts(
    num_blocks: int, mode: str, steps: int, part_sizes: list[int], cross_timestep: dict | None, read_part: int,
    device: torch.device,
) -> list[AttentionLayout | None]:
    """The attention layout of each block of a stack: the mask's layout (None for "full": no mask), except that the
    last block computes queries and outputs only for `read_part`, the part the stack's output is read from."""
    if not num_blocks:
        return []
    args = (mode, steps, part_sizes, cross_timestep, device)
    mask = None if mode == "full" else build_attention_layout(*args)
    return [mask] * (num_blocks - 1) + [build_attention_layout(*args, query_part=read_part)]


class LinearHead(nn.Module):
    """Optional parameter-free LayerNorm, optional adaLN (shift, scale per sample), then a linear projection."""

    def __init__(self, dim: int, out_dim: int, norm: bool, bias: bool, adaln: bool = False, adaln_bias: bool = True):
        super().__init__()
        self.norm = norm
        self.modulation = Linear(dim, 2 * dim, bias=adaln_bias) if adaln else None
        self.proj = Linear(dim, out_dim, bias=bias)

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
        part_sizes = [part.shape[2] for part in parts]
        register_part = list(config.encoder_token_order).index("registers")
        layouts = _block_layouts(len(self.blocks), config.encoder_attention_mask, steps, part_sizes,
                                 config.encoder_cross_timestep_attention, register_part, hidden.device)
        for block, layout in zip(self.blocks, layouts):
            hidden = block(hidden, layout)
        # the last block returned the registers only
        registers_out = hidden if self.blocks else hidden.split(part_sizes, dim=2)[register_part]
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
        self.register_embed = Linear(config.fsq_dim, dim, bias=config.decoder_register_embed_bias)
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
            Linear(dim, config.decoder_adaln_expansion * 6 * dim) for _ in range(config.decoder_num_layers)
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
        patch_part = list(config.decoder_token_order).index("patches")
        layouts = _block_layouts(len(self.blocks), config.decoder_attention_mask, steps, part_sizes,
                                 config.decoder_cross_timestep_attention, patch_part, hidden.device)
        conditioning = F.silu(self.time_embed(timesteps))
        slot_of_position = _slot_of_position(tuple(part_sizes), str(hidden.device))
        for block, block_modulation, layout in zip(self.blocks, self.block_modulations, layouts):
            modulation = block_modulation(conditioning).view(batch, len(parts), 6 * dim)
            modulation = modulation.index_select(1, slot_of_position).unsqueeze(1)
            hidden = block(hidden, layout, modulation)
        # the last block returned the patches only
        patches_out = hidden if self.blocks else hidden.split(part_sizes, dim=2)[patch_part]
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
    (sampling, guidance, long videos) lives in `VideoFlexTokPipeline` (with the `videoflextok_hf` package installed,
    `model.detokenize(token_ids)` builds it).
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
    # chunk geometry (computed by `ChunkGeometry`; these names are kept for callers of the model)
    @property
    def chunk_geometry(self) -> ChunkGeometry:
        return self.config.chunk_geometry

    @property
    def tokens_per_chunk(self) -> int:
        return self.chunk_geometry.tokens_per_chunk

    @property
    def overlap_tokens(self) -> int:
        return self.chunk_geometry.overlap_tokens

    def num_chunks_for_frames(self, num_frames: int) -> int:
        """Number of chunks of a video with `num_frames` frames; raises if the count does not fit the chunking."""
        return self.chunk_geometry.num_chunks_for_frames(num_frames)

    def num_chunks_for_token_steps(self, num_steps: int) -> int:
        return self.chunk_geometry.num_chunks_for_token_steps(num_steps)

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
        if videos.device != self.input_device:
            raise ValueError(
                f"{name} are on {videos.device} but the model is on {self.input_device}; move them with "
                f"`{name}.to(model.device)`."
            )
        height, width = videos.shape[-2:]
        factor = config.vae_spatial_downsample_factor
        patches = (config.encoder_patch_size, config.decoder_patch_size)
        multiple_h = factor * math.lcm(*(patch[1] for patch in patches))
        multiple_w = factor * math.lcm(*(patch[2] for patch in patches))
        if height % multiple_h or width % multiple_w:
            if multiple_h == multiple_w:
                raise ValueError(f"{name} height and width must be multiples of {multiple_h}, got {height}x{width}.")
            raise ValueError(
                f"{name} height must be a multiple of {multiple_h} and width of {multiple_w}, got {height}x{width}."
            )
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
        return self.chunk_geometry.split(videos)

    def stitch_chunks(self, per_chunk: torch.Tensor, batch: int, time_dim: int, overlap: int) -> torch.Tensor:
        """Inverse of the chunking for per-chunk outputs: drop the first `overlap` steps of every chunk but the
        first along `time_dim` and concatenate."""
        return self.chunk_geometry.stitch(per_chunk, batch, time_dim, overlap)

    @property
    def input_device(self) -> torch.device:
        """The device inputs must be on: the weights' device or, under accelerate offloading (weights parked on the
        CPU or the meta device between calls), the device its hooks run the model on (as tensors there report it)."""
        for module in self.modules():
            device = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
            if device is not None:
                return torch.empty(0, device=device).device
        return self.device

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
                (1 + 16K for the released models); (H, W) is normally `config.frame_size`.
            sample_posterior (`bool`): draw the VAE latents from the posterior as the official code does (its
                tokenization is stochastic) instead of using the posterior mean (default, deterministic).
            generator (`torch.Generator`, *optional*): RNG for the posterior sample; without it the global RNG is
                used (which reproduces the official code under `torch.manual_seed`). One draw covers all chunks of
                all videos, sample-major.

        Returns:
            [`VideoFlexTokEncoderOutput`] with `token_ids [B, t, N]`, t = 1 + 4K for the released models.
        """
        self.check_videos(videos)
        batch, geometry = videos.shape[0], self.chunk_geometry
        chunks = geometry.split(videos.to(self.vae_dtype))
        with torch.no_grad():
            posterior = self.vae.encode(chunks).latent_dist
            vae_latents = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        latents = self.encoder(vae_latents.to(self.encoder.registers.dtype))
        codes, token_ids = self.quantizer(latents)
        output = VideoFlexTokEncoderOutput(
            token_ids=geometry.stitch_tokens(token_ids, batch),
            codes=geometry.stitch_tokens(codes, batch),
            latents=geometry.stitch_tokens(latents, batch),
            vae_latents=geometry.stitch_latents(vae_latents, batch),
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

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs) -> "VideoFlexTokModel":
        """`PreTrainedModel.from_pretrained`, plus an error that names the file when the weights are unreadable."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except Exception as error:
            if type(error).__name__ != "SafetensorError":
                raise
            raise OSError(
                f"{pretrained_model_name_or_path}: model.safetensors could not be read ({error}). The file is "
                "truncated or corrupt: download it again (`force_download=True`) or re-run `save_pretrained`."
            ) from None

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
        device = self.input_device
        if noisy_latents.device != device or token_ids.device != device:
            raise ValueError(
                f"noisy_latents ({noisy_latents.device}) and token_ids ({token_ids.device}) must be on the model's "
                f"device ({device}); move them with `.to(model.device)`."
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
        self.quantizer.check_ids(token_ids)
        return self._predict_velocity(noisy_latents, timesteps, self.decoder_codes(token_ids), keep, prefix, uncond)

    def decoder_codes(self, token_ids: torch.LongTensor) -> torch.Tensor:
        """Unchecked: valid token ids `[B, t, n]` -> the decoder's register codes `[B, t, N, fsq_dim]` (in the
        decoder's dtype; registers beyond n get zero codes, they are masked anyway since num_tokens <= n)."""
        codes = self.quantizer.ids_to_codes_unchecked(token_ids)
        missing = self.config.num_registers - token_ids.shape[2]
        if missing:
            codes = F.pad(codes, (0, 0, 0, missing))
        return codes.to(self.decoder.register_embed.weight.dtype)

    def _predict_velocity(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        codes: torch.Tensor,
        num_tokens: torch.LongTensor,
        prefix_frames: torch.LongTensor,
        unconditional: torch.BoolTensor,
    ) -> torch.Tensor:
        """`predict_velocity` without input checks (no host synchronisation), for callers that validated once:
        `timesteps [B]` float32, `codes` from `decoder_codes`, and `[B]` tensors on the model's device."""
        dtype = self.decoder.register_embed.weight.dtype
        return self.decoder(noisy_latents.to(dtype), timesteps, codes, num_tokens, prefix_frames, unconditional)
