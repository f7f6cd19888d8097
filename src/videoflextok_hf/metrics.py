"""Reconstruction metrics: PSNR, SSIM and a Fréchet video distance with a pluggable feature extractor.

Videos are `[B, T, 3, H, W]` or `[B, 3, T, H, W]` (say which with `layout`) with values in [0, 1]. PSNR and SSIM are
computed per frame and averaged per video. The Fréchet distance compares Gaussian fits of features of two video
sets; real I3D weights (rFVD) are not bundled, so the extractor is an argument.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def _frames(videos: torch.Tensor, layout: str) -> torch.Tensor:
    """`[B, T, C, H, W]` float64 frames from either layout."""
    if videos.dim() != 5:
        raise ValueError(f"videos must be 5-D ({layout}), got shape {tuple(videos.shape)}.")
    if layout == "BCTHW":
        videos = videos.transpose(1, 2)
    elif layout != "BTCHW":
        raise ValueError(f"layout must be 'BTCHW' or 'BCTHW', got {layout!r}.")
    return videos.double()


def _check_pair(prediction: torch.Tensor, target: torch.Tensor) -> None:
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} must have the same shape.")


def psnr(prediction: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, layout: str = "BTCHW") -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, per video `[B]` (mean over frames of the per-frame PSNR)."""
    _check_pair(prediction, target)
    a, b = _frames(prediction, layout), _frames(target, layout)
    mse = ((a - b) ** 2).flatten(2).mean(-1).clamp(min=1e-20)
    return (10 * torch.log10(data_range**2 / mse)).mean(-1)


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def ssim(
    prediction: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    layout: str = "BTCHW",
    window_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, valid
    convolution, channels averaged), per video `[B]` (mean over frames)."""
    _check_pair(prediction, target)
    a, b = _frames(prediction, layout), _frames(target, layout)
    batch, steps, channels, height, width = a.shape
    if min(height, width) < window_size:
        raise ValueError(f"SSIM needs frames of at least {window_size}x{window_size} pixels, got {height}x{width}.")
    a = a.reshape(batch * steps, channels, height, width)
    b = b.reshape(batch * steps, channels, height, width)
    window = _gaussian_window(window_size, sigma).to(a.device)
    kernel_h = window.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    kernel_w = window.view(1, 1, 1, -1).expand(channels, 1, 1, -1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, kernel_h, groups=channels), kernel_w, groups=channels)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim_map.mean(dim=(1, 2, 3)).reshape(batch, steps).mean(-1)


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians, in float64.

    Tr((S1 S2)^(1/2)) is computed as the sum of square roots of the eigenvalues of S1^(1/2) S2 S1^(1/2), which is
    symmetric positive semi-definite, so no complex square roots are needed.
    """
    mu1, mu2, sigma1, sigma2 = (x.double() for x in (mu1, mu2, sigma1, sigma2))
    values, vectors = torch.linalg.eigh(sigma1)
    sqrt1 = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    middle = sqrt1 @ sigma2 @ sqrt1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    return float(((mu1 - mu2) ** 2).sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2 * trace_sqrt)


class FrechetVideoDistance:
    """Accumulates features of real and generated videos; `compute()` returns their Fréchet distance.

    Args:
        feature_extractor: maps a batch of videos `[B, 3, T, H, W]` in [0, 1] to features `[B, D]` (e.g. an I3D
            network's logits for rFVD; not bundled because its weights are not redistributable here).
    """

    def __init__(self, feature_extractor: Callable[[torch.Tensor], torch.Tensor]):
        self.feature_extractor = feature_extractor
        self.features: dict[str, list[torch.Tensor]] = {"real": [], "fake": []}

    @torch.no_grad()
    def update(self, videos: torch.Tensor, real: bool) -> None:
        features = self.feature_extractor(videos)
        if features.dim() != 2 or features.shape[0] != videos.shape[0]:
            raise ValueError(f"the feature extractor must return [B, D] features, got {tuple(features.shape)}.")
        self.features["real" if real else "fake"].append(features.double().cpu())

    @staticmethod
    def _statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = features.mean(0)
        centered = features - mean
        return mean, centered.T @ centered / (features.shape[0] - 1)

    def compute(self) -> float:
        real, fake = (torch.cat(self.features[k]) if self.features[k] else None for k in ("real", "fake"))
        if real is None or fake is None or len(real) < 2 or len(fake) < 2:
            raise ValueError("FrechetVideoDistance needs at least 2 real and 2 generated videos.")
        return frechet_distance(*self._statistics(real), *self._statistics(fake))

    def reset(self) -> None:
        self.features = {"real": [], "fake": []}
