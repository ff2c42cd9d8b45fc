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
from the blur at once (an auxiliary loss on ``|z|``, see :mod:`..train_ldse`) and the sign
from the PSF's asymmetry on top of it.

The input is one channel: :func:`prepare_tiles` turns RGB into luma, scales by the dtype's
range and standardises each tile by its own mean and standard deviation, so exposure and
stain intensity do not shift the prediction. Fully convolutional up to the pooling, the
network accepts any tile size ≥ 32 px; it is trained and meant to be used at 224×224.

This module defines the network, its preprocessing and its weight files (safetensors +
model card via :mod:`.registry`'s helpers); it does not train (:mod:`..train_ldse`) or
tile wide fields (:mod:`..autofocus`).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_gplws.errors import ModelError

__all__ = [
    "DEFAULT_LDSE",
    "TILE_PX",
    "LDSEConfig",
    "LDSENet",
    "count_parameters",
    "ldse_card_markdown",
    "load_ldse",
    "prepare_tiles",
    "save_ldse",
]

DEFAULT_LDSE = "ldse_default"
TILE_PX = 224
FORMAT = "ldse/1"
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
        for b, (g, n, tanh) in enumerate(zip(cfg.growth, cfg.layers, cfg.tanh_blocks)):
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


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


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


# ------------------------------------------------------------------------------------------
# Weight files
# ------------------------------------------------------------------------------------------
_CACHE: dict[tuple[str, str], LDSENet] = {}
_LOCK = threading.Lock()


def save_ldse(model: LDSENet, path: str | Path, card: dict[str, Any] | None = None) -> Path:
    """Write weights as safetensors (config in the metadata) and the model card JSON + Markdown."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(
        state, str(path), metadata={"format": FORMAT, "config": json.dumps(model.config.to_dict())}
    )
    if card is not None:
        path.with_suffix(".json").write_text(
            json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        path.with_suffix(".md").write_text(ldse_card_markdown(card), encoding="utf-8")
    with _LOCK:
        _CACHE.clear()
    return path


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def ldse_card_markdown(card: dict[str, Any]) -> str:
    """Markdown model card: the registry's header plus the test tables of an LDSE-NET card."""
    from napari_gplws.models.registry import card_markdown

    lines = [card_markdown(card).rstrip(), ""]
    for key in ("run_history", "sign_convention", "other_optics"):
        if key in card:
            lines.append(f"- **{key}**: {card[key]}")
    if "optics" in card:
        lines.append(f"- **optics**: {json.dumps(card['optics'], ensure_ascii=False)}")
    net, base = card.get("test"), card.get("baseline_abs_only", {})
    if net:
        dof = net.get("dof_um", float("nan"))
        lines += [
            "",
            "## Held-out simulated test set",
            "",
            str(card.get("test_set", "")),
            "",
            "| metric (µm unless stated) | LDSE-NET | classical \\|z\\|-only baseline |",
            "|---|---|---|",
            f"| MAE, \\|z\\| ≤ 5 µm | {_fmt(net.get('mae_le5'))} | {_fmt(base.get('mae_abs_le5'))} (of \\|z\\|) |",
            f"| MAE of \\|z\\|, \\|z\\| ≤ 5 µm | {_fmt(net.get('mae_abs_le5'))} | {_fmt(base.get('mae_abs_le5'))} |",
            f"| sign accuracy, \\|z\\| ≥ 1 µm | {_fmt(net.get('sign_acc_ge1'))} | 0.5 (no sign) |",
            (
                f"| sign accuracy where the direction is confident (≥ {net.get('confident_threshold', 0.5)}), "
                f"\\|z\\| ≥ 1 µm | {_fmt(net.get('sign_acc_confident_ge1'))} "
                f"({_fmt(net.get('confident_fraction_ge1'), 2)} of the tiles) | – |"
            ),
            f"| MAE, all (±10 µm) | {_fmt(net.get('mae'))} | {_fmt(base.get('mae_abs'))} (of \\|z\\|) |",
            f"| RMSE | {_fmt(net.get('rmse'))} | – |",
            f"| median absolute error | {_fmt(net.get('median'))} | {_fmt(base.get('median_abs'))} (of \\|z\\|) |",
            f"| P90 absolute error | {_fmt(net.get('p90'))} | {_fmt(base.get('p90_abs'))} (of \\|z\\|) |",
            (
                f"| fraction within DOF/2 ({dof / 2:.2f} µm) | {_fmt(net.get('within_dof_half'))} | "
                f"{_fmt(base.get('within_dof_half_abs'))} (of \\|z\\|) |"
            ),
            "",
            "### Error per 1 µm bin of the true defocus",
            "",
            "| true defocus (µm) | n | MAE | bias (mean predicted − true) |",
            "|---|---|---|---|",
        ]
        for b in net.get("per_bin", []):
            lo, hi = b["bin_um"]
            lines.append(f"| [{lo:g}, {hi:g}) | {b['n']} | {_fmt(b['mae'])} | {_fmt(b['bias'])} |")
    mag = card.get("test_magnitude")
    if mag:
        lines += [
            "",
            "### Unsigned output (magnitude head) on the same tiles",
            "",
            "| metric (µm, against \\|z\\|) | LDSE-NET magnitude | classical baseline |",
            "|---|---|---|",
            f"| MAE, \\|z\\| ≤ 5 µm | {_fmt(mag.get('mae_abs_le5'))} | {_fmt(base.get('mae_abs_le5'))} |",
            f"| MAE, all | {_fmt(mag.get('mae_abs'))} | {_fmt(base.get('mae_abs'))} |",
            f"| median | {_fmt(mag.get('median_abs'))} | {_fmt(base.get('median_abs'))} |",
            f"| P90 | {_fmt(mag.get('p90_abs'))} | {_fmt(base.get('p90_abs'))} |",
            (
                f"| within DOF/2 | {_fmt(mag.get('within_dof_half_abs'))} | "
                f"{_fmt(base.get('within_dof_half_abs'))} |"
            ),
        ]
    reg = card.get("regions")
    if reg:
        lines += [
            "",
            "### Regions (what a focal-error map shows)",
            "",
            (
                f"Median of {reg['tiles_per_region']} tiles per region ({reg['region_um']:.0f} µm "
                f"square), {reg['n']} regions of held-out specimens and aberrations, defocus "
                "uniform in ±10 µm:"
            ),
            "",
            (
                "| MAE, \\|z\\| ≤ 5 µm | sign accuracy, \\|z\\| ≥ 1 µm | sign where confident "
                "(share) | MAE, all | median | P90 | within DOF/2 |"
            ),
            "|---|---|---|---|---|---|---|",
            (
                f"| {_fmt(reg.get('mae_le5'))} | {_fmt(reg.get('sign_acc_ge1'))} | "
                f"{_fmt(reg.get('sign_acc_confident_ge1'))} "
                f"({_fmt(reg.get('confident_fraction_ge1'), 2)}) | {_fmt(reg.get('mae'))} | "
                f"{_fmt(reg.get('median'))} | {_fmt(reg.get('p90'))} | "
                f"{_fmt(reg.get('within_dof_half'))} |"
            ),
        ]
    pairs = card.get("pairs")
    if pairs:
        lines += [
            "",
            "### Two frames a known step apart (direction from the focus positions)",
            "",
            (
                "`autofocus(stack, positions, combine_frames=True)`: each tile's defocus from "
                "the best focus that fits both frames' magnitudes (napari_gplws.defocus.fit), "
                "held-out specimens and aberrations, first frame uniform in ±10 µm:"
            ),
            "",
            (
                "| step (µm) | pairs | MAE, \\|z\\| ≤ 5 µm | sign accuracy, \\|z\\| ≥ 1 µm | "
                "sign where confident (share) | median | P90 | single frame: MAE \\|z\\| ≤ 5, sign |"
            ),
            "|---|---|---|---|---|---|---|---|",
        ]
        for pr in pairs:
            one = pr.get("single_frame", {})
            lines.append(
                f"| {pr['step_um']:g} | {pr['n']} | {_fmt(pr.get('mae_le5'))} | "
                f"{_fmt(pr.get('sign_acc_ge1'))} | {_fmt(pr.get('sign_acc_confident_ge1'))} "
                f"({_fmt(pr.get('confident_fraction_ge1'), 2)}) | {_fmt(pr.get('median'))} | "
                f"{_fmt(pr.get('p90'))} | {_fmt(one.get('mae_le5'))}, {_fmt(one.get('sign_acc_ge1'))} |"
            )
    if card.get("status"):
        lines += ["", "## Status", "", str(card["status"])]
    for key, title, label in (
        ("per_modality", "Per modality", "modality"),
        ("per_specimen", "Per test specimen", "specimen"),
        ("per_aberration", "Per test aberration configuration", "configuration"),
    ):
        rows = card.get(key)
        if not rows:
            continue
        lines += [
            "",
            f"### {title}",
            "",
            (
                f"| {label} | n | MAE | MAE \\|z\\| ≤ 5 | MAE of \\|z\\|, \\|z\\| ≤ 5 | "
                "sign accuracy \\|z\\| ≥ 1 | sign where confident (share) |"
            ),
            "|---|---|---|---|---|---|---|",
        ]
        for k, v in rows.items():
            lines.append(
                f"| {k} | {v['n']} | {_fmt(v['mae'])} | {_fmt(v['mae_le5'])} | "
                f"{_fmt(v.get('mae_abs_le5'))} | {_fmt(v['sign_acc_ge1'])} | "
                f"{_fmt(v.get('sign_acc_confident_ge1'))} ({_fmt(v.get('confident_fraction_ge1'), 2)}) |"
            )
    return "\n".join(lines) + "\n"


def load_ldse(name_or_path: str | Path = DEFAULT_LDSE, device: str = "cpu") -> LDSENet:
    """Load LDSE-NET weights (packaged name or ``.safetensors`` path) once per (file, device).

    Raises
    ------
    ModelError
        The file is missing or does not hold LDSE-NET weights.
    """
    from napari_gplws.models.registry import read_weights, weights_path

    path = weights_path(name_or_path)
    key = (str(path.resolve()), str(device))
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        if not path.is_file():
            raise ModelError(
                f"LDSE-NET weights '{path}' are missing. Reinstall napari-gplws (the default weights "
                "ship with it) or train them with `gplws train ldse`."
            )
        state, meta = read_weights(path, FORMAT, "LDSE-NET")
        model = LDSENet(LDSEConfig.from_dict(json.loads(meta.get("config", "{}"))))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelError(f"The weights in '{path}' do not fit LDSE-NET: {exc}") from None
        # channels-last memory layout: about 1.5× faster convolutions on CPU (oneDNN).
        model = model.to(torch.device(device), memory_format=torch.channels_last).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        _CACHE[key] = model
        return model
