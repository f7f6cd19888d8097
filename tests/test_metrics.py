"""PSNR / SSIM / Fréchet distance maths."""

import math

import pytest
import torch

from videoflextok_hf.metrics import FrechetVideoDistance, frechet_distance, psnr, ssim


def test_psnr_known_value_and_layouts():
    target = torch.zeros(1, 2, 3, 8, 8)
    prediction = torch.full_like(target, 0.1)  # mse 0.01 -> 20 dB
    assert psnr(prediction, target).item() == pytest.approx(20.0)
    assert psnr(prediction.transpose(1, 2), target.transpose(1, 2), layout="BCTHW").item() == pytest.approx(20.0)
    with pytest.raises(ValueError, match="same shape"):
        psnr(prediction, target[:, :1])


def _ssim_reference(a: torch.Tensor, b: torch.Tensor) -> float:
    """Direct sliding-window SSIM of one [C, H, W] image pair (valid windows, Gaussian weights)."""
    size, sigma = 11, 1.5
    coords = torch.arange(size, dtype=torch.float64) - 5
    w1 = torch.exp(-(coords**2) / (2 * sigma**2))
    weights = (w1[:, None] * w1[None, :]) / w1.sum() ** 2
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for c in range(a.shape[0]):
        for i in range(a.shape[1] - size + 1):
            for j in range(a.shape[2] - size + 1):
                x, y = a[c, i : i + size, j : j + size].double(), b[c, i : i + size, j : j + size].double()
                mx, my = (weights * x).sum(), (weights * y).sum()
                vx, vy = (weights * x * x).sum() - mx**2, (weights * y * y).sum() - my**2
                cov = (weights * x * y).sum() - mx * my
                values.append(((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(torch.stack(values).mean())


def test_ssim_matches_direct_definition():
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(1, 1, 2, 14, 13, generator=generator)
    b = (a + 0.2 * torch.randn(a.shape, generator=generator)).clamp(0, 1)
    assert ssim(a, a).item() == pytest.approx(1.0)
    assert ssim(a, b).item() == pytest.approx(_ssim_reference(a[0, 0], b[0, 0]), abs=1e-10)
    assert ssim(a, b).item() == pytest.approx(ssim(b, a).item())
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(a[..., :8, :8], b[..., :8, :8])


def test_frechet_distance_of_gaussians():
    # closed form for diagonal covariances: |mu1-mu2|^2 + sum (s1 + s2 - 2 sqrt(s1 s2))
    mu1, mu2 = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0])
    s1, s2 = torch.diag(torch.tensor([1.0, 4.0])), torch.diag(torch.tensor([4.0, 1.0]))
    expected = 1.0 + (1 + 4 - 2 * 2) + (4 + 1 - 2 * 2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected)
    # invariant to a common rotation, zero for identical distributions
    rotation = torch.tensor([[math.cos(0.3), -math.sin(0.3)], [math.sin(0.3), math.cos(0.3)]])
    rotated = frechet_distance(rotation @ mu1, rotation @ s1 @ rotation.T, rotation @ mu2, rotation @ s2 @ rotation.T)
    assert rotated == pytest.approx(expected)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_video_distance_with_pluggable_extractor():
    def extractor(videos):  # mean colour per video as a 3-d feature
        return videos.mean(dim=(2, 3, 4))

    metric = FrechetVideoDistance(extractor)
    generator = torch.Generator().manual_seed(0)
    real = torch.rand(64, 3, 2, 4, 4, generator=generator)
    metric.update(real[:32], real=True)
    metric.update(real[32:], real=False)
    same = metric.compute()
    metric.reset()
    metric.update(real, real=True)
    metric.update((real + 0.3).clamp(0, 1), real=False)
    shifted = metric.compute()
    assert same < 0.01 < shifted
    metric.reset()
    with pytest.raises(ValueError, match="at least 2"):
        metric.compute()
