"""`VideoFlexTokPipeline`: token ids (any prefix k of each step's tokens) -> video.

Decoding runs chunk by chunk. Chunk 0 holds the first `P` token steps (5 for the released models); every later
chunk holds the next `P - 1` steps and is decoded conditioned on the last decoded frame of the previous chunk:
that frame is re-tokenized (its tokens fill the missing first step), VAE-encoded and imposed as clean latents
on the first latent frame at every step, and the duplicated frame is dropped from the output. Only one chunk's
activations are alive at a time.

Noise is drawn per sample, in sample order, per chunk, in chunk order: chunk c of sample b uses the
(c * B + b)-th draw of shape `[1, C, t, h, w]` from `generator` (or from `generator[b]` when a list is given, which
makes every video independent of the rest of the batch). `latents` replaces the draws of chunk 0.
Conditioning frames are encoded with the VAE posterior mean, so a seeded run is exactly reproducible (the
official code samples the posterior from the global RNG there).

This file and `scheduling_flow_match.py` / `guidance.py` double as Hub remote code (a release carries them, so
`DiffusionPipeline.from_pretrained(repo, trust_remote_code=True)` decodes without this package): they import only
each other, torch, numpy, PIL, diffusers and transformers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor
from transformers import AutoModel, PreTrainedModel

from .guidance import AdaptiveProjectedGuidance, GuidanceScale, classifier_free_guidance, resolve_guidance_scale
from .scheduling_flow_match import VideoFlexTokFlowMatchScheduler

logger = logging.getLogger(__name__)

GUIDANCE_MODES = ("apg", "cfg", "none")
OUTPUT_TYPES = ("pt", "np", "pil", "latent")
# the sampling arguments whose defaults come from the model's `config.decoding_defaults`
DECODING_ARGUMENTS = ("num_inference_steps", "guidance", "guidance_scale", "apg_momentum", "apg_eta",
                      "apg_norm_threshold")


def _has_file(path_or_repo_id, filename: str, hub_kwargs: dict) -> bool:
    """Whether a local folder or a Hub repo (possibly only in the offline cache) holds `filename`."""
    if os.path.isdir(path_or_repo_id):
        return os.path.isfile(os.path.join(path_or_repo_id, filename))
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        hf_hub_download(str(path_or_repo_id), filename, **hub_kwargs)
    except (EntryNotFoundError, LocalEntryNotFoundError):
        return False
    return True


@dataclass
class VideoFlexTokPipelineOutput(BaseOutput):
    """
    Args:
        frames: the decoded videos. `output_type="pt"`: `torch.Tensor [B, T, 3, H, W]` in [0, 1]; `"np"`:
            `np.ndarray [B, T, H, W, 3]` in [0, 1]; `"pil"`: a list (videos) of lists (frames) of PIL images;
            `"latent"`: the sampled VAE latents `[B, C, t, h, w]` (chunks stitched).
    """

    frames: torch.Tensor | np.ndarray | list[list[PIL.Image.Image]]


class VideoFlexTokPipeline(DiffusionPipeline):
    r"""Decode VideoFlexTok token ids into videos with a rectified-flow sampler and CFG / APG guidance.

    Args:
        model ([`VideoFlexTokModel`]): the tokenizer (its decoder predicts velocities, its VAE decodes latents).
        scheduler ([`VideoFlexTokFlowMatchScheduler`]): the sampling grid and Euler step.

    The sampling arguments left out of a call take the model's recommended values (`model.config.decoding_defaults`).
    `enable_model_cpu_offload()` keeps one of the model's parts (VAE, encoder, decoder) on the accelerator at a
    time; `enable_sequential_cpu_offload()` streams the weights layer by layer.
    """

    model_cpu_offload_seq = "model"
    _callback_tensor_inputs = ["latents"]

    def __init__(self, model: PreTrainedModel, scheduler: VideoFlexTokFlowMatchScheduler):
        super().__init__()
        self.register_modules(model=model, scheduler=scheduler)
        self.video_processor = VideoProcessor(do_resize=False)
        self.current_chunk = 0

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "VideoFlexTokPipeline":
        """Load a release or a model folder (the model at the root, the scheduler in `scheduler/`; the official grid
        is used if it has none), or a pipeline saved with `save_pretrained` (diffusers layout, `model_index.json`)."""
        hub_keys = ("revision", "cache_dir", "token", "local_files_only", "force_download")
        hub_kwargs = {key: kwargs[key] for key in hub_keys if key in kwargs}
        if not _has_file(pretrained_model_name_or_path, "config.json", hub_kwargs):
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        model_kwargs = {k: v for k, v in kwargs.items() if k not in hub_keys}
        model = AutoModel.from_pretrained(pretrained_model_name_or_path, **hub_kwargs, **model_kwargs)
        if _has_file(pretrained_model_name_or_path, "scheduler/scheduler_config.json", hub_kwargs):
            scheduler = VideoFlexTokFlowMatchScheduler.from_pretrained(
                pretrained_model_name_or_path, subfolder="scheduler", **hub_kwargs
            )
        else:
            logger.info("no scheduler/ in %s: using the official sampling grid", pretrained_model_name_or_path)
            scheduler = VideoFlexTokFlowMatchScheduler()
        return cls(model=model, scheduler=scheduler)

    def enable_model_cpu_offload(self, gpu_id: int | None = None, device: torch.device | str | None = None):
        """Model CPU offload with the model's parts as the units that move: the VAE (or compressor), the encoder and
        the decoder each go to the accelerator when they run and back to the CPU when the next one starts (decoding
        alternates decoder steps and VAE calls chunk by chunk, so only one part is on the accelerator at a time).
        Arguments as in [`~DiffusionPipeline.enable_model_cpu_offload`]."""
        super().enable_model_cpu_offload(gpu_id=gpu_id, device=device)  # checks, device choice, the model's hook
        from accelerate import cpu_offload_with_hook

        hook, hooks = None, []
        model = self.model
        for part in (model.vae, model.encoder, model.decoder):  # the order a chunk uses them, then the cycle closes
            if next(part.parameters(), None) is None:  # a parameter-free compressor (DCT, patchify): nothing to move
                part.to(self._offload_device)
                continue
            _, hook = cpu_offload_with_hook(part, self._offload_device, prev_module_hook=hook)
            hooks.append(hook)
        hooks[0].hook.prev_module_hook = hooks[-1]
        # the whole-model hook stays (diffusers reads the execution device from it; it moves everything only if the
        # model's own `forward` is called); the part hooks are the ones freed after a call
        self._all_hooks = hooks + self._all_hooks

    @staticmethod
    def _onload(module: torch.nn.Module) -> None:
        """Run `module`'s model-offload hook before calling an entry point other than its `forward` (which is what
        the hook wraps), e.g. `vae.encode` / `vae.decode`. No-op without model offloading."""
        hook = getattr(module, "_hf_hook", None)
        if hook is not None and type(hook).__name__ == "CpuOffload":
            hook.pre_forward(module)

    def decoding_settings(self, **overrides) -> dict:
        """The sampling settings of a call: the given ones, the rest from the model's `config.decoding_defaults`."""
        defaults = getattr(self.model.config, "decoding_defaults", None) or {}
        settings = {}
        for name in DECODING_ARGUMENTS:
            value = overrides.get(name)
            if value is None:
                if name not in defaults:
                    raise ValueError(
                        f"{name} was not given and the model's config has no decoding_defaults[{name!r}]; pass it."
                    )
                value = defaults[name]
            settings[name] = value
        return settings

    # ---------------------------------------------------------------------------------------------------------
    def check_inputs(self, token_ids, num_tokens, guidance, guidance_scale, num_inference_steps, output_type,
                     latents, conditioning_frames, callback_on_step_end_tensor_inputs):
        model = self.model
        if not isinstance(token_ids, torch.Tensor) or token_ids.dim() != 3:
            shape = tuple(token_ids.shape) if isinstance(token_ids, torch.Tensor) else type(token_ids).__name__
            raise ValueError(f"token_ids must be a LongTensor [B, t, n], got {shape}.")
        if token_ids.dtype.is_floating_point or token_ids.dtype == torch.bool:
            raise TypeError(f"token_ids must hold integers, got dtype {token_ids.dtype}.")
        batch, steps, count = token_ids.shape
        if batch == 0:
            raise ValueError("token_ids holds no videos (batch size 0).")
        if not 1 <= count <= model.config.num_registers:
            raise ValueError(f"token_ids must hold 1..{model.config.num_registers} tokens per step, got n={count}.")
        model.quantizer.check_ids(token_ids)
        model.chunk_geometry.num_chunks_for_token_steps(steps)
        if guidance not in GUIDANCE_MODES:
            raise ValueError(f"guidance must be one of {GUIDANCE_MODES}, got {guidance!r}.")
        if not callable(guidance_scale) and not isinstance(guidance_scale, (int, float)):
            raise TypeError(f"guidance_scale must be a float or a callable of t, got {type(guidance_scale).__name__}.")
        if not isinstance(num_inference_steps, int) or isinstance(num_inference_steps, bool) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}.")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        expected = self._latent_shape(batch)
        if latents is not None and (not isinstance(latents, torch.Tensor) or tuple(latents.shape) != expected):
            got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ValueError(f"latents (initial noise of the first chunk) must have shape {expected}, got {got}.")
        if conditioning_frames is not None:
            model.check_videos(conditioning_frames, name="conditioning_frames", frame_rule=False)
            frames = conditioning_frames.shape[2]
            factor = model.config.vae_temporal_downsample_factor
            if conditioning_frames.shape[0] != batch:
                raise ValueError(
                    f"conditioning_frames has {conditioning_frames.shape[0]} videos but token_ids has {batch}."
                )
            if (frames - 1) % factor or frames >= model.config.chunk_size:
                raise ValueError(
                    f"conditioning_frames must hold 1 + {factor}*j frames (fewer than a chunk of "
                    f"{model.config.chunk_size}), got {frames}."
                )
            height, width = model.config.frame_size
            if tuple(conditioning_frames.shape[-2:]) != (height, width):
                raise ValueError(
                    f"conditioning_frames must be {height}x{width} (the model's frame size), got "
                    f"{tuple(conditioning_frames.shape[-2:])}."
                )
        if callback_on_step_end_tensor_inputs is not None:
            unknown = [name for name in callback_on_step_end_tensor_inputs if name not in self._callback_tensor_inputs]
            if unknown:
                raise ValueError(f"callback tensor inputs {unknown} are not available; use {self._callback_tensor_inputs}.")
        keep = self._per_video_num_tokens(num_tokens, batch, count)
        if (keep < model.config.num_registers).any() and model.decoder.register_mask_token is None:
            raise ValueError("this model has no nested-dropout mask token, so it can only decode all tokens.")
        return keep

    def _per_video_num_tokens(self, num_tokens, batch: int, count: int) -> torch.Tensor:
        if num_tokens is None:
            return torch.full((batch,), count, dtype=torch.long)
        values = torch.as_tensor(num_tokens)
        if values.dtype.is_floating_point or values.dtype == torch.bool:
            raise TypeError(f"num_tokens must be integers, got {num_tokens!r}.")
        if values.dim() == 0:
            values = values.expand(batch)
        if values.shape != (batch,):
            raise ValueError(f"num_tokens must be an int or one value per video ({batch}), got {num_tokens!r}.")
        if (values < 1).any() or (values > count).any():
            raise ValueError(
                f"num_tokens must lie in 1..{count} (the tokens given per step); got {values.tolist()}. "
                "Pass more tokens or a smaller k."
            )
        return values.long().clone()

    def _latent_shape(self, batch: int) -> tuple[int, ...]:
        config = self.model.config
        return (batch, config.vae_latent_channels, config.latent_frames_per_chunk, *config.latent_grid)

    # ---------------------------------------------------------------------------------------------------------
    def _draw_noise(self, batch: int, generator) -> torch.Tensor:
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(f"got {len(generator)} generators for {batch} videos; pass one or one per video.")
        shape = (1,) + self._latent_shape(batch)[1:]
        draws = [
            randn_tensor(shape, generator=generator[b] if isinstance(generator, list) else generator,
                         device=self._execution_device, dtype=torch.float32)
            for b in range(batch)
        ]
        return torch.cat(draws)

    @torch.no_grad()
    def _condition_on_frames(self, frames: torch.Tensor, count: int):
        """Tokens (first `count` per step) and clean VAE latents of conditioning frames."""
        model = self.model
        frames = frames.to(device=self._execution_device, dtype=model.vae_dtype)
        self._onload(model.vae)
        latents = model.vae.encode(frames).latent_dist.mode()
        token_ids = model.quantizer(model.encoder(latents.to(model.encoder.registers.dtype)))[1]
        return token_ids[..., :count], latents.float()

    @torch.no_grad()
    def _sample_chunk(self, token_ids, num_tokens, noise, cond_latents, guidance, guidance_scale,
                      apg: AdaptiveProjectedGuidance | None, num_inference_steps, callback_on_step_end,
                      callback_on_step_end_tensor_inputs):
        model = self.model
        batch = token_ids.shape[0]
        device = self._execution_device
        prefix = 0 if cond_latents is None else cond_latents.shape[2]
        # the grid stays on the host: the scheduler's per-step lookups then never wait for the accelerator
        self.scheduler.set_timesteps(num_inference_steps, device="cpu")
        sigmas = self.scheduler.sigmas[: len(self.scheduler.timesteps)]
        scales = [resolve_guidance_scale(guidance_scale, sigma) for sigma in sigmas]
        guided = [guidance != "none" and scale != 1.0 for scale in scales]
        # the inputs were checked once (check_inputs); what depends on the grid is checked here, on host values, so
        # that the loop below runs the unchecked decoder path without host synchronisation
        max_timestep = model.config.time_embedding_max_timestep
        if any(not 0 <= sigma <= max_timestep for sigma in sigmas):
            raise ValueError(f"timestep must lie in [0, {max_timestep}], got {sigmas}.")
        if prefix >= token_ids.shape[1]:
            raise ValueError(f"prefix_frames must lie in [0, {token_ids.shape[1]}), got {[prefix] * batch}.")
        if any(guided) and model.decoder.null_condition is None:
            raise ValueError("this model has no learned null condition, so it cannot run the unconditional pass.")
        codes = model.decoder_codes(token_ids)
        prefix_frames = torch.full((batch,), prefix, dtype=torch.long, device=device)
        conditional = torch.zeros(batch, dtype=torch.bool, device=device)
        if any(guided):  # conditional and null-condition passes in one batch
            pair_codes, pair_keep = torch.cat([codes, codes]), torch.cat([num_tokens, num_tokens])
            pair_prefix, pair_uncond = prefix_frames.repeat(2), torch.arange(2 * batch, device=device) >= batch
        latents = noise
        dtype = model.encoder.registers.dtype  # the transformers' (the VAE may run in another dtype)
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            sigma, scale = sigmas[i], scales[i]
            if cond_latents is not None:
                latents[:, :, :prefix] = cond_latents
            if guided[i]:
                timesteps = torch.full((2 * batch,), sigma, dtype=torch.float32, device=device)
                velocity = model._predict_velocity(
                    torch.cat([latents, latents]).to(dtype), timesteps, pair_codes, pair_keep, pair_prefix, pair_uncond
                ).float()
                cond, uncond = velocity.chunk(2)
                if guidance == "cfg":
                    velocity = classifier_free_guidance(cond, uncond, scale)
                else:
                    velocity = apg(cond, uncond, scale)
            else:
                timesteps = torch.full((batch,), sigma, dtype=torch.float32, device=device)
                velocity = model._predict_velocity(
                    latents.to(dtype), timesteps, codes, num_tokens, prefix_frames, conditional
                ).float()
            latents = self.scheduler.step(velocity, t, latents).prev_sample
            if callback_on_step_end is not None:
                local = {"latents": latents}
                outputs = callback_on_step_end(self, i, t, {k: local[k] for k in callback_on_step_end_tensor_inputs})
                latents = (outputs or {}).get("latents", latents)
        if cond_latents is not None:
            latents[:, :, :prefix] = cond_latents
        return latents

    # ---------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        token_ids: torch.LongTensor,
        num_tokens: int | list[int] | torch.Tensor | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: GuidanceScale | None = None,
        guidance: str | None = None,
        apg_momentum: float | None = None,
        apg_eta: float | None = None,
        apg_norm_threshold: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        conditioning_frames: torch.Tensor | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> VideoFlexTokPipelineOutput | tuple:
        r"""Decode token ids into videos.

        Args:
            token_ids (`torch.LongTensor` `[B, t, n]`): t = 1 + 4K steps (released models), n <= N tokens per step.
            num_tokens (`int`, list of `int` or `torch.Tensor`, *optional*): decode from the first k tokens of
                every step; one value for all videos or one per video (mixed k decode in one batch). Default n.
            num_inference_steps (`int`, *optional*): Euler steps per chunk (official grid t = i / N).
            guidance_scale (`float` or callable of the flow time t, *optional*): 1.0 disables guidance.
            guidance (`str`, *optional*): "apg" (official), "cfg" or "none".
            apg_momentum, apg_eta, apg_norm_threshold (*optional*): APG parameters (per-video momentum buffers).
                These six default to the model's recommended values, `model.config.decoding_defaults` (official
                releases: 30 steps, APG 20; the bundled tiny model: 1 step, no guidance).
            generator (`torch.Generator` or a list with one per video): noise RNG; see the module docstring for
                the draw order.
            latents (`torch.Tensor` `[B, C, t_chunk, h, w]`, *optional*): initial noise of the first chunk.
            conditioning_frames (`torch.Tensor` `[B, 3, k, H, W]` in [-1, 1], *optional*): frames the first chunk
                starts with (k = 1 + 4j); their tokens replace the first steps and their latents are imposed.
            output_type (`str`): "pt", "np", "pil" or "latent".
            callback_on_step_end (`Callable`, *optional*): `fn(pipe, step, timestep, kwargs) -> dict`, called after
                every step; `pipe.current_chunk` tells which chunk is being sampled. It may replace "latents".

        Returns:
            [`VideoFlexTokPipelineOutput`] or a tuple whose first element is the video (or the latents).
        """
        callback_on_step_end_tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        settings = self.decoding_settings(
            num_inference_steps=num_inference_steps, guidance=guidance, guidance_scale=guidance_scale,
            apg_momentum=apg_momentum, apg_eta=apg_eta, apg_norm_threshold=apg_norm_threshold,
        )
        num_inference_steps, guidance, guidance_scale = (
            settings["num_inference_steps"], settings["guidance"], settings["guidance_scale"]
        )
        apg_momentum, apg_eta, apg_norm_threshold = (
            settings["apg_momentum"], settings["apg_eta"], settings["apg_norm_threshold"]
        )
        keep = self.check_inputs(token_ids, num_tokens, guidance, guidance_scale, num_inference_steps, output_type,
                                 latents, conditioning_frames, callback_on_step_end_tensor_inputs)
        model = self.model
        device = self._execution_device
        token_ids = token_ids.to(device)
        keep = keep.to(device)
        batch, steps, count = token_ids.shape
        geometry = model.chunk_geometry
        num_chunks = geometry.num_chunks_for_token_steps(steps)
        apg = AdaptiveProjectedGuidance(apg_momentum, apg_eta, apg_norm_threshold) if guidance == "apg" else None

        videos, chunk_latents = [], []
        for chunk in range(num_chunks):
            self.current_chunk = chunk
            if apg is not None:
                apg.reset()
            noise = self._draw_noise(batch, generator)
            if chunk == 0 and latents is not None:
                noise = latents.to(device=device, dtype=torch.float32).clone()
            cond_latents = None
            chunk_ids = token_ids[:, geometry.new_token_steps(chunk)]
            if chunk == 0:
                if conditioning_frames is not None:
                    cond_ids, cond_latents = self._condition_on_frames(conditioning_frames, count)
                    chunk_ids = torch.cat([cond_ids, chunk_ids[:, cond_ids.shape[1]:]], dim=1)
            elif geometry.overlap_frames:
                previous = videos[-1][:, :, -geometry.overlap_frames:]
                cond_ids, cond_latents = self._condition_on_frames(previous, count)
                chunk_ids = torch.cat([cond_ids, chunk_ids], dim=1)
            sampled = self._sample_chunk(chunk_ids, keep, noise, cond_latents, guidance, guidance_scale, apg,
                                         num_inference_steps, callback_on_step_end, callback_on_step_end_tensor_inputs)
            self._onload(model.vae)
            video = model.vae.decode(sampled.to(model.vae_dtype)).sample.float()
            if chunk > 0 and geometry.overlap_frames:
                video = video[:, :, geometry.overlap_frames:]
                sampled = sampled[:, :, geometry.overlap_latent_frames:]
            videos.append(video)
            chunk_latents.append(sampled)
        self.maybe_free_model_hooks()

        if output_type == "latent":
            frames = torch.cat(chunk_latents, dim=2)
        else:
            video = torch.cat(videos, dim=2)
            frames = self.video_processor.postprocess_video(video, output_type=output_type)
        if not return_dict:
            return (frames,)
        return VideoFlexTokPipelineOutput(frames=frames)
