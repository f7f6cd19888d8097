"""The official VideoFlexTok training objective, written out.

For a batch of single-chunk clips:
  1. frozen VAE -> latents x0 `[B, C, t, h, w]`;
  2. encoder -> FSQ codes with straight-through gradients;
  3. nested dropout: each sample keeps the first k registers of every time step (k ~ the configured sampler,
     uniform in 1..N by default); the rest become the learned mask token -> coarse-to-fine ordering;
  4. null condition: with probability p a sample's registers are replaced by the learned null token (for CFG);
  5. prefix conditioning: with the configured probabilities the first p latent steps are clean (or lightly noised,
     sigma ~ U(range) with probability q), their registers are replaced by the prefix token and they are left out
     of the loss -> the decoder learns to continue from given frames (used for long videos);
  6. rectified flow: sigma = sigmoid(N(0, 1)), x_t = sigma * noise + (1 - sigma) * x0, target v = noise - x0, MSE.
Every random draw comes from the `generator` argument, so a step is reproducible from (weights, batch, seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class FlowMatchingLossOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` `[]`): mean squared error over the non-prefix latent frames.
        sigmas (`[B]`), num_tokens (`[B]`), prefix_frames (`[B]`), unconditional (`[B]`): what was sampled.
    """

    loss: torch.FloatTensor | None = None
    sigmas: torch.FloatTensor | None = None
    num_tokens: torch.LongTensor | None = None
    prefix_frames: torch.LongTensor | None = None
    unconditional: torch.BoolTensor | None = None


def _powers_of_two(limit: int) -> list[int]:
    return [2**i for i in range(limit.bit_length()) if 2**i <= limit]


def sample_num_tokens(mode: str, count: int, batch: int, generator: torch.Generator | None = None,
                      zipf_a: float = 0.5) -> torch.LongTensor:
    """Nested-dropout k per sample, with the official samplers (`uniform` by default)."""

    def uniform() -> torch.Tensor:
        return torch.randint(1, count + 1, (batch,), generator=generator)

    def choice(values: list[int], weights: torch.Tensor | None = None) -> torch.Tensor:
        weights = torch.ones(len(values)) if weights is None else weights
        index = torch.multinomial(weights, batch, replacement=True, generator=generator)
        return torch.tensor(values)[index]

    if mode == "uniform":
        return uniform()
    if mode == "pow2":
        return choice(_powers_of_two(count))
    if mode == "pow2_roundup":
        next_pow2 = 1 << (count - 1).bit_length()
        return choice(_powers_of_two(next_pow2)).clamp(max=count)
    if mode == "uniform_pow2":
        k = uniform()
        return torch.tensor([1 << (int(v) - 1).bit_length() for v in k]).clamp(max=count)
    if mode == "uniform_halved":
        k = uniform()
        return torch.tensor([count >> ((count // int(v)).bit_length() - 1) for v in k])
    if mode == "halved":
        values, value = [], count
        while value > 0:
            values.append(value)
            value //= 2
        return choice(values)
    if mode == "zipf":
        values = list(range(1, count + 1))
        return choice(values, torch.tensor([k ** -zipf_a for k in values], dtype=torch.float64))
    raise ValueError(f"unknown nested-dropout sampling mode {mode!r}")


def flow_matching_loss(
    model,
    videos: torch.Tensor | None = None,
    vae_latents: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    sigma_logit_mean: float = 0.0,
    draw_rows: tuple[int, int] | None = None,
) -> FlowMatchingLossOutput:
    """Training loss of `model` (a `VideoFlexTokModel`) on one-chunk clips `videos [B, 3, chunk_size, H, W]`
    (or precomputed `vae_latents`). All random draws use `generator` (CPU generator; tensors are moved).

    `sigma_logit_mean` shifts the noise-level distribution, sigma = sigmoid(N(mean, 1)); the official value is 0.
    A positive mean trains more at high noise, where the tokens are the decoder's only source of information.

    `draw_rows=(offset, total)`: this batch is rows `offset .. offset + B` of a global batch of `total` samples split
    across processes; every draw is made for the `total` samples and this batch's rows are kept, so a sample gets
    the same noise, k, sigma, ... however the global batch is split (one process or several). Default: (0, B).
    """
    config = model.config
    if vae_latents is None:
        if videos is None:
            raise ValueError("pass either videos [B, 3, chunk_size, H, W] or vae_latents [B, C, t, h, w].")
        model.check_videos(videos)
        if videos.shape[2] != config.chunk_size:
            raise ValueError(f"training clips must be one chunk of {config.chunk_size} frames, got {videos.shape[2]}.")
    batch = (videos if vae_latents is None else vae_latents).shape[0]
    offset, total = draw_rows if draw_rows is not None else (0, batch)
    if not (0 <= offset and offset + batch <= total):
        raise ValueError(f"draw_rows={draw_rows} (offset, total) does not hold this batch of {batch} rows.")
    rows = slice(offset, offset + batch)

    def draw(fn, shape):
        # drawn for the whole global batch (dim 0 = total), this batch's rows kept
        return fn((total, *shape[1:]), generator=generator)[rows]

    if vae_latents is None:
        with torch.no_grad():
            posterior = model.vae.encode(videos).latent_dist
            noise = draw(torch.randn, posterior.mean.shape).to(posterior.mean)
            # the official encoder samples the posterior (mean + std * eps); eps from our generator
            vae_latents = posterior.mean + posterior.std * noise
    device = vae_latents.device
    dtype = model.encoder.registers.dtype
    x0 = vae_latents.float()

    latents = model.encoder(x0.to(dtype))
    codes, _ = model.quantizer(latents)

    num_tokens = sample_num_tokens(config.nested_dropout_sampling, config.num_registers, total, generator)[rows]
    unconditional = draw(torch.rand, (batch,)) < config.null_condition_dropout_prob
    prefix_index = torch.multinomial(
        torch.tensor(config.prefix_probabilities, dtype=torch.float64), total, replacement=True, generator=generator
    )[rows]
    prefix_frames = torch.tensor(config.prefix_lengths)[prefix_index]
    low, high = config.prefix_noise_range
    prefix_noised = draw(torch.rand, (batch,)) < config.prefix_noise_probability
    prefix_sigma = torch.where(prefix_noised, low + (high - low) * draw(torch.rand, (batch,)), 0.0)
    sigmas = torch.sigmoid(draw(torch.randn, (batch,)) + sigma_logit_mean)
    noise = draw(torch.randn, x0.shape).to(device)

    view = (batch, 1, 1, 1, 1)
    sigma_b, prefix_sigma_b = sigmas.to(device).view(view), prefix_sigma.to(device).view(view)
    noisy = sigma_b * noise + (1.0 - sigma_b) * x0
    frame_index = torch.arange(x0.shape[2], device=device).view(1, 1, -1, 1, 1)
    in_prefix = frame_index < (prefix_frames.to(device) * config.decoder_patch_size[0]).view(view)
    noisy = torch.where(in_prefix, prefix_sigma_b * noise + (1.0 - prefix_sigma_b) * x0, noisy)

    velocity = model.decoder(
        noisy.to(dtype), sigmas.to(device), codes.to(dtype), num_tokens.to(device), prefix_frames.to(device),
        unconditional.to(device),
    )
    target = noise - x0
    weights = (~in_prefix).expand_as(target).float()
    loss = ((velocity.float() - target) ** 2 * weights).sum() / weights.sum().clamp(min=1.0)
    return FlowMatchingLossOutput(
        loss=loss, sigmas=sigmas, num_tokens=num_tokens, prefix_frames=prefix_frames, unconditional=unconditional
    )


class FlowMatchingObjective(torch.nn.Module):
    """The training view of a `VideoFlexTokModel`: its `forward` is the flow-matching loss.

    This is what the trainer hands to `accelerator.prepare`: the loss is computed inside the prepared module's
    forward, so DistributedDataParallel's gradient all-reduce, FSDP's parameter gathering and DeepSpeed's hooks run
    and `accelerator.accumulate` / `no_sync` apply (calling the objective on the unwrapped model bypasses all of
    them: every process would train its own copy). The model stays a plain submodule (`.model`), so its weights,
    `save_pretrained` and the EMA keep their names.
    """

    def __init__(self, model, sigma_logit_mean: float = 0.0):
        super().__init__()
        self.model = model
        self.sigma_logit_mean = sigma_logit_mean

    def forward(
        self,
        videos: torch.Tensor | None = None,
        vae_latents: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        draw_rows: tuple[int, int] | None = None,
    ) -> FlowMatchingLossOutput:
        """`flow_matching_loss(self.model, ...)`; see there for the arguments."""
        return flow_matching_loss(self.model, videos=videos, vae_latents=vae_latents, generator=generator,
                                  sigma_logit_mean=self.sigma_logit_mean, draw_rows=draw_rows)
