"""LDSE-NET: a light DenseNet with a squeeze-and-excitation head that regresses the signed
defocus (µm of focus-drive travel) of one microscope tile.

Architecture (after the paper's description; our own implementation):

* stem: 7×7 convolution, stride 2, BN, ReLU, then 3×3 max-pool, stride 2;
* dense blocks with few layers (default 3, 4, 4; growth 12, 16, 16): each layer is
  BN → activation → 3×3 convolution whose output is concatenated to its input; the
  first block uses ReLU, the later ones Tanh ("some Tanh activations");
* transition layers between blocks: BN → Tanh → 1×1 convolution (halving the channels)
  → 2×2 average pool;
* a final BN → ReLU, then a squeeze-and-excitation block whose gate is Tanh
  (``x · tanh(W2 relu(W1 gap(x)))``), global average pooling and a linear layer.

The linear layer has two outputs, a magnitude ``m = softplus(a)`` and a sign logit ``s``;
the defocus is ``m · tanh(s)`` (µm). This departs from a single linear output on purpose:
with a plain signed output and an MSE loss nothing can be gained before the sign is
learnt (for a symmetric label distribution the best sign-blind prediction is 0), so
training stalls at the label variance; with the factorised head the magnitude is learnt
from the blur at once (an auxiliary loss on ``|z|``, see :mod:`napari_gplws.training.ldse`)
and the sign from the PSF's asymmetry on top of it.

The input is one channel: :func:`prepare_tiles` turns RGB into luma, scales by the dtype's
range and standardises each tile by its own mean and standard deviation, so exposure and
stain intensity do not shift the prediction. Fully convolutional up to the pooling, the
network accepts any tile size ≥ 32 px; it is trained and meant to be used at 224×224.

This module defines the network and its preprocessing. Its weight files are read and
written by :mod:`.registry` (:func:`~.registry.load_ldse`, :func:`~.registry.save_ldse`)
and its model card rendered by :mod:`.cards`; it does not train
(:mod:`napari_gplws.training.ldse`) or tile wide fields (:mod:`napari_gplws.defocus`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

# Kept here for old imports: parameter counts and the card renderer live in .cards.
from napari_gplws.models.cards import count_parameters, ldse_card_markdown

__all__ = [
    "TILE_PX",
    "LDSEConfig",
    "LDSENet",
    "count_parameters",
    "ldse_card_markdown",
    "prepare_tiles",
]

TILE_PX = 224
_LUMA = np.array([0.2125, 0.7154, 0.0721], np.float32)


@dataclass(frozen=True)
class LDSEConfig:
    """Hyper-parameters of :class:`LDSENet`."""

    stem: int = 24
    growth: tuple[int, ...] = (12, 16, 16)
    layers: tuple[int, ...] = (3, 4, 4)
    tanh_blocks: tuple[bool, ...] = (False, True, True)
    compression: float = 0.5
    se_reduction: int = 4
    spectrum_bins: int = 48
    spectrum_hidden: int = 64

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LDSEConfig:
        d = {"spectrum_bins": 0, **d}  # weights written before the spectrum branch had none
        kw = {
            k: (tuple(v) if isinstance(v, list) else v)
            for k, v in d.items()
            if k in cls.__dataclass_fields__
        }
        return cls(**kw)


class _DenseLayer(nn.Module):
    def __init__(self, c_in: int, growth: int, tanh: bool) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.act = nn.Tanh() if tanh else nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(c_in, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(self.act(self.bn(x)))], dim=1)


class _Transition(nn.Sequential):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.BatchNorm2d(c_in), nn.Tanh(), nn.Conv2d(c_in, c_out, 1, bias=False), nn.AvgPool2d(2)
        )


class _TanhSE(nn.Module):
    """Squeeze-and-excitation with a Tanh gate."""

    def __init__(self, c: int, reduction: int) -> None:
        super().__init__()
        hidden = max(c // reduction, 4)
        self.fc1 = nn.Linear(c, hidden)
        self.fc2 = nn.Linear(hidden, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3))
        g = torch.tanh(self.fc2(torch.relu(self.fc1(s))))
        return x * g[:, :, None, None]


class _SpectrumBranch(nn.Module):
    """Radially averaged log power spectrum of the tile, through a small MLP.

    The defocus of a microscope tile is written in its spectrum: the optical transfer
    function's fall-off and zero crossings move with ``|z|``, and under spherical
    aberration (and, in brightfield, through the interference of absorption and phase
    contrast) the spectrum's shape differs above and below focus. Jiang et al. (2018,
    "Transform- and multi-domain deep learning for single-frame rapid autofocusing in whole
    slide imaging") found Fourier-domain inputs markedly better than the image alone; a
    small CNN with global pooling measures such radial profiles poorly, so they are
    computed here exactly (Hann window, rFFT, mean power per ring of radial frequency in
    cycles/pixel up to Nyquist, log, mean over rings removed) and the MLP's features join
    the CNN's before the linear head. The rings are rotation invariant, so flips and turns
    of a tile do not change them. Written by hand: it is a few lines of ``torch.fft``, and
    no maintained library computes a differentiable radial power spectrum.
    """

    def __init__(self, bins: int, hidden: int) -> None:
        super().__init__()
        self.bins = bins
        self.norm = nn.BatchNorm1d(bins)
        self.mlp = nn.Sequential(
            nn.Linear(bins, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self._ops: dict[tuple[int, int, str], tuple[torch.Tensor, ...]] = {}

    def _operators(self, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        key = (h, w, str(device))
        if key not in self._ops:
            window = torch.outer(
                torch.hann_window(h, periodic=False), torch.hann_window(w, periodic=False)
            )
            fy = torch.fft.fftfreq(h)[:, None]
            fx = torch.fft.rfftfreq(w)[None, :]
            ring = torch.floor(torch.sqrt(fy * fy + fx * fx) / 0.5 * self.bins).long().ravel()
            # The rFFT keeps half the plane: a column 0 < kx < W/2 stands for ±kx, columns 0
            # and W/2 only for themselves. Weighting them so gives full-plane ring sums, which
            # a flip or quarter turn of the tile leaves unchanged.
            col = torch.full((1, fx.shape[1]), 2.0)
            col[0, 0] = 1.0
            if w % 2 == 0:
                col[0, -1] = 1.0
            weight = col.expand(h, -1).ravel()
            keep = torch.nonzero(ring < self.bins).ravel()
            counts = torch.zeros(self.bins).index_add_(0, ring[keep], weight[keep]).clamp(min=1.0)
            self._ops[key] = tuple(
                t.to(device) for t in (window, keep, ring[keep], weight[keep], counts)
            )
        return self._ops[key]

    def profile(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, bins)`` log mean power per radial-frequency ring, mean over rings removed."""
        window, keep, ring, weight, counts = self._operators(x.shape[-2], x.shape[-1], x.device)
        power = torch.fft.rfft2(x[:, 0].float() * window).abs().square().flatten(1)
        sums = torch.zeros(x.shape[0], self.bins, device=x.device, dtype=power.dtype)
        sums.index_add_(1, ring, power[:, keep] * weight)
        logp = torch.log(sums / counts + 1e-6)
        return logp - logp.mean(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm(self.profile(x)))


class LDSENet(nn.Module):
    """Single-tile signed defocus regressor.

    Input ``(B, 1, H, W)`` float32 from :func:`prepare_tiles`; output ``(B,)`` defocus in µm
    (:meth:`forward_parts` gives the magnitude and sign logit separately).
    """

    def __init__(self, config: LDSEConfig | None = None) -> None:
        super().__init__()
        cfg = config or LDSEConfig()
        if not (len(cfg.growth) == len(cfg.layers) == len(cfg.tanh_blocks)):
            raise ValueError("growth, layers and tanh_blocks must have one entry per dense block.")
        self.config = cfg
        self.stem = nn.Sequential(
            nn.Conv2d(1, cfg.stem, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(cfg.stem),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        blocks: list[nn.Module] = []
        c = cfg.stem
        for b, (g, n, tanh) in enumerate(zip(cfg.growth, cfg.layers, cfg.tanh_blocks, strict=True)):
            for _ in range(n):
                blocks.append(_DenseLayer(c, g, tanh))
                c += g
            if b < len(cfg.layers) - 1:
                c_out = max(int(c * cfg.compression), 8)
                blocks.append(_Transition(c, c_out))
                c = c_out
        self.features = nn.Sequential(*blocks, nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.se = _TanhSE(c, cfg.se_reduction)
        self.spectrum = (
            _SpectrumBranch(cfg.spectrum_bins, cfg.spectrum_hidden) if cfg.spectrum_bins else None
        )
        n_spec = cfg.spectrum_hidden if cfg.spectrum_bins else 0
        self.head = nn.Linear(c + n_spec, 2)
        self.n_features = c + n_spec

    def forward_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(magnitude ≥ 0 in µm, sign logit)`` of each tile; the defocus is their combination."""
        feats = self.se(self.features(self.stem(x))).mean(dim=(2, 3))
        if self.spectrum is not None:
            feats = torch.cat([feats, self.spectrum(x)], dim=1)
        out = self.head(feats)
        return nn.functional.softplus(out[:, 0]), out[:, 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        magnitude, sign_logit = self.forward_parts(x)
        return magnitude * torch.tanh(sign_logit)


def prepare_tiles(tiles: np.ndarray) -> np.ndarray:
    """Network input from tiles: ``(M, H, W[, 3])`` any dtype -> ``(M, 1, H, W)`` float32.

    RGB becomes Rec. 709 luma; integers are scaled by their dtype's maximum (floats are
    taken as given); each tile is then standardised to zero mean and unit standard
    deviation (the deviation is floored at ``1e-3`` of full scale so that flat tiles are
    not amplified into noise).

    Raises
    ------
    ValueError
        When the array is not ``(M, H, W)`` or ``(M, H, W, 3)``.
    """
    a = np.asarray(tiles)
    if a.ndim == 2:
        a = a[None]
    if not (a.ndim == 3 or (a.ndim == 4 and a.shape[-1] == 3)):
        raise ValueError(f"tiles must be (M, H, W) or (M, H, W, 3); got shape {a.shape}.")
    scale = float(np.iinfo(a.dtype).max) if a.dtype.kind in "ui" else 1.0
    x = a.astype(np.float32) if a.ndim == 3 else a.astype(np.float32) @ _LUMA
    x /= np.float32(scale)
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = x.std(axis=(1, 2), keepdims=True)
    x = (x - mean) / np.maximum(std, 1e-3)
    return x[:, None]
