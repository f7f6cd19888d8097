"""The flow-matching scheduler and CFG/APG guidance, against the official formulas and diffusers' classes."""

import warnings

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from videoflextok_hf.pipeline import (
    AdaptiveProjectedGuidance,
    VideoFlexTokFlowMatchScheduler,
    classifier_free_guidance,
)


def _official_loop(velocity_fn, noise, steps):
    """The official sampler's update, written out: t = i/N for i = N..1, x <- x - (1/N) v(x, t)."""
    x, dt = noise.clone(), 1.0 / steps
    for i in range(steps, 0, -1):
        x = x - dt * velocity_fn(x, i / steps)
    return x


def _velocity(x, t):
    return torch.sin(3 * x) * t + 0.5 * x


@pytest.mark.parametrize("steps", [1, 3, 4, 30])
def test_default_grid_reproduces_official_sampler_exactly(steps):
    scheduler = VideoFlexTokFlowMatchScheduler()
    scheduler.set_timesteps(steps)
    assert scheduler.sigmas == [i / steps for i in range(steps, 0, -1)] + [0.0]
    noise = torch.randn(2, 16, 5, 4, 4, generator=torch.Generator().manual_seed(0))
    x = noise.clone()
    for i, t in enumerate(scheduler.timesteps):
        x = scheduler.step(_velocity(x, scheduler.sigmas[i]), t, x).prev_sample
    assert torch.equal(x, _official_loop(_velocity, noise, steps))


def test_interchangeable_with_diffusers_flow_match_euler():
    steps = 30
    ours = VideoFlexTokFlowMatchScheduler()
    ours.set_timesteps(steps)
    theirs = FlowMatchEulerDiscreteScheduler()
    theirs.set_timesteps(sigmas=[i / steps for i in range(steps, 0, -1)])
    assert torch.allclose(theirs.timesteps, ours.timesteps)
    noise = torch.randn(1, 16, 5, 4, 4, generator=torch.Generator().manual_seed(1))
    a, b = noise.clone(), noise.clone()
    for i, (t_ours, t_theirs) in enumerate(zip(ours.timesteps, theirs.timesteps)):
        a = ours.step(_velocity(a, ours.sigmas[i]), t_ours, a).prev_sample
        b = theirs.step(_velocity(b, (t_theirs / 1000).item()), t_theirs, b).prev_sample
    # same grid and update; only float32 round-off of diffusers' sigma differences differs
    assert (a - b).abs().max().item() < 1e-5
    # and the swap works through the config
    swapped = FlowMatchEulerDiscreteScheduler.from_config(ours.config)
    assert swapped.config.num_train_timesteps == 1000


def test_scheduler_config_round_trip_and_validation(tmp_path):
    scheduler = VideoFlexTokFlowMatchScheduler(shift=3.0)
    scheduler.save_pretrained(tmp_path)
    assert (tmp_path / "scheduler_config.json").is_file()
    reloaded = VideoFlexTokFlowMatchScheduler.from_pretrained(tmp_path)
    assert reloaded.config.shift == 3.0
    reloaded.set_timesteps(4)
    assert reloaded.sigmas[0] == 1.0 and reloaded.sigmas[1] == pytest.approx(3 * 0.75 / (1 + 2 * 0.75))
    with pytest.raises(ValueError, match="num_inference_steps"):
        reloaded.set_timesteps(0)
    with pytest.raises(ValueError, match="strictly decreasing"):
        reloaded.set_timesteps(sigmas=[0.5, 0.7])
    with pytest.raises(RuntimeError, match="set_timesteps"):
        VideoFlexTokFlowMatchScheduler().step(torch.zeros(1), 1000.0, torch.zeros(1))


def test_scale_noise_is_the_training_forward_process():
    scheduler = VideoFlexTokFlowMatchScheduler()
    x0, noise = torch.randn(2, 3), torch.randn(2, 3)
    t = torch.tensor([250.0, 900.0])
    expected = torch.stack([0.25 * noise[0] + 0.75 * x0[0], 0.9 * noise[1] + 0.1 * x0[1]])
    assert torch.allclose(scheduler.scale_noise(x0, t, noise), expected)


def _diffusers_guider(cls, **kwargs):
    import diffusers.guiders as guiders

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(guiders, cls)(**kwargs)


def test_cfg_equals_diffusers_classifier_free_guidance():
    cond, uncond = torch.randn(2, 16, 5, 4, 4), torch.randn(2, 16, 5, 4, 4)
    guider = _diffusers_guider("ClassifierFreeGuidance", guidance_scale=3.0)
    guider.set_state(step=0, num_inference_steps=1, timestep=torch.tensor(1000.0))
    theirs = guider.forward(cond, uncond).pred
    assert torch.equal(classifier_free_guidance(cond, uncond, 3.0), theirs)


@pytest.mark.parametrize("momentum,eta,threshold", [(0.0, 0.0, 0.6), (-0.5, 0.3, 0.6), (0.0, 0.0, 0.0)])
def test_apg_equals_diffusers_adaptive_projected_guidance(momentum, eta, threshold):
    from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer

    scale = 3.0
    ours = AdaptiveProjectedGuidance(momentum=momentum, eta=eta, norm_threshold=threshold)
    guider = _diffusers_guider(
        "AdaptiveProjectedGuidance",
        guidance_scale=scale - 1,
        adaptive_projected_guidance_momentum=momentum,
        adaptive_projected_guidance_rescale=threshold,
        adaptive_projected_guidance_norm_dim=(-1, -2, -3),
        eta=eta,
        use_original_formulation=True,
    )
    guider.momentum_buffer = MomentumBuffer(momentum) if momentum else None
    generator = torch.Generator().manual_seed(3)
    for step in range(4):
        cond = torch.randn(1, 16, 5, 4, 4, generator=generator)
        uncond = cond + 0.5 * torch.randn(1, 16, 5, 4, 4, generator=generator)
        guider.set_state(step=step, num_inference_steps=4, timestep=torch.tensor(1000.0))
        theirs = guider.forward(cond, uncond).pred
        assert (ours(cond, uncond, scale) - theirs).abs().max().item() <= 1e-6


def test_apg_momentum_is_per_sample():
    torch.manual_seed(0)
    pairs = [(torch.randn(2, 16, 5, 4, 4), torch.randn(2, 16, 5, 4, 4)) for _ in range(3)]
    batched = AdaptiveProjectedGuidance(momentum=-0.5, eta=0.3)
    singles = [AdaptiveProjectedGuidance(momentum=-0.5, eta=0.3) for _ in range(2)]
    for cond, uncond in pairs:
        together = batched(cond, uncond, 3.0)
        apart = torch.cat([singles[b](cond[b : b + 1], uncond[b : b + 1], 3.0) for b in range(2)])
        assert (together - apart).abs().max().item() <= 1e-6
