"""Training data for GPLWS-Net: a fast on-the-fly synthetic stack renderer and a Micro 3D loader.

Two sources of ``(stack, depth_index)`` pairs:

* :class:`SyntheticFocusDataset` renders random focus stacks on the fly, fast enough that data
  generation does not dominate a CPU training step (a 24×96×96 stack takes a few ms). Each
  sample draws a random height map (all families of :data:`TRAIN_FAMILIES`: planes, domes,
  cones, terraces, waves, bumps, rough and smooth random surfaces, cylinders, pyramids), a
  random texture (multi-scale noise, blobs, lines, with textureless patches), a blur strength
  per focus step, noise, gamma, illumination drift, 8-bit / 16-bit / float quantisation,
  grayscale or colour, flips and 90° rotations and reversed acquisition order. Defocus blur is
  rendered by interpolating, per pixel and frame, between a pyramid of Gaussian-blurred copies
  of the in-focus texture (a thin-lens, Gaussian-PSF approximation). The ground truth is the
  fractional frame index at which each pixel is in focus, so focus positions in µm never
  matter for training.
* :func:`micro3d_training_sample` turns a sample of a Micro 3D-style folder
  (:class:`napari_gplws.io.micro3d.Micro3DDataset`) into an augmented training sample.

The physically detailed simulator for tests and benchmarks lives in
:mod:`napari_gplws.sim.focus_stacks`; this module favours speed and variety for training. It
does not train anything (see :mod:`napari_gplws.training.gplws`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_gplws.io.micro3d import Micro3DDataset

__all__ = [
    "TRAIN_FAMILIES",
    "RenderConfig",
    "SyntheticFocusDataset",
    "micro3d_training_sample",
    "render_height",
    "render_stack",
    "render_texture",
]

TRAIN_FAMILIES: tuple[str, ...] = (
    "plane",
    "dome",
    "cone",
    "terraces",
    "waves",
    "bumps",
    "smooth",
    "rough",
    "cylinder",
    "pyramid",
    "steps",
)


@dataclass
class RenderConfig:
    """Ranges from which :class:`SyntheticFocusDataset` draws its random stacks."""

    n_frames: tuple[int, int] = (8, 32)
    size: tuple[int, int] = (64, 112)
    blur_per_step: tuple[float, float] = (0.35, 2.5)  # Gaussian sigma (px) per frame of defocus
    base_blur: tuple[float, float] = (0.0, 0.8)
    height_fraction: tuple[float, float] = (0.15, 1.0)  # of the frame range covered by the surface
    noise: tuple[float, float] = (0.0, 0.05)
    gamma: tuple[float, float] = (0.6, 1.6)
    p_rgb: float = 0.3
    p_blank_patch: float = 0.35
    families: tuple[str, ...] = TRAIN_FAMILIES


# ---------------------------------------------------------------------------------------
# Height maps
# ---------------------------------------------------------------------------------------


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    s = float(max(h, w))
    return (y - h / 2) / s, (x - w / 2) / s


def _smooth_noise(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise scaled to unit std, computed at low resolution."""
    f = max(1, int(sigma // 4))
    hs, ws = max(2, h // f + 2), max(2, w // f + 2)
    n = ndi.gaussian_filter(rng.standard_normal((hs, ws)).astype(np.float32), sigma / f, mode="wrap")
    if f > 1:
        n = ndi.zoom(n, f, order=1)
    n = n[:h, :w]
    if n.shape != (h, w):
        n = np.pad(n, ((0, h - n.shape[0]), (0, w - n.shape[1])), mode="edge")
    return (n - n.mean()) / (n.std() + 1e-6)


def render_height(family: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A random height map of the given family, scaled to [0, 1] (float32, ``(h, w)``)."""
    y, x = _grid(h, w)
    cy, cx = rng.uniform(-0.3, 0.3, 2)
    r = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
    if family == "plane":
        a = rng.uniform(0, 2 * np.pi)
        z = np.cos(a) * x + np.sin(a) * y
    elif family == "dome":
        rad = rng.uniform(0.3, 0.9)
        z = np.sqrt(np.clip(rad**2 - r**2, 0, None))
        if rng.random() < 0.5:
            z = -z
    elif family == "cone":
        z = -r
    elif family == "terraces":
        a = rng.uniform(0, 2 * np.pi)
        t = np.cos(a) * x + np.sin(a) * y + 0.15 * _smooth_noise(rng, h, w, 20) * rng.random()
        z = np.floor(t * rng.uniform(3, 10))
    elif family == "steps":
        z = np.zeros((h, w), np.float32)
        for _ in range(rng.integers(1, 5)):
            a = rng.uniform(0, 2 * np.pi)
            off = rng.uniform(-0.3, 0.3)
            z += rng.uniform(-1, 1) * ((np.cos(a) * x + np.sin(a) * y) > off)
        if rng.random() < 0.5:  # a raised rectangle / disc
            z += rng.uniform(-1, 1) * (r < rng.uniform(0.1, 0.4))
    elif family == "waves":
        z = np.zeros((h, w), np.float32)
        for _ in range(rng.integers(1, 3)):
            a = rng.uniform(0, 2 * np.pi)
            f = rng.uniform(1, 6)
            z += np.sin(2 * np.pi * f * (np.cos(a) * x + np.sin(a) * y) + rng.uniform(0, 6.3))
    elif family == "bumps":
        z = np.zeros((h, w), np.float32)
        for _ in range(rng.integers(2, 9)):
            by, bx = rng.uniform(-0.5, 0.5, 2)
            s = rng.uniform(0.05, 0.25)
            z += rng.uniform(-1, 1) * np.exp(-((y - by) ** 2 + (x - bx) ** 2) / (2 * s * s))
    elif family == "smooth":
        z = _smooth_noise(rng, h, w, rng.uniform(8, 40))
    elif family == "rough":
        z = _smooth_noise(rng, h, w, rng.uniform(2, 6)) * 0.3 + _smooth_noise(rng, h, w, 30)
    elif family == "cylinder":
        a = rng.uniform(0, 2 * np.pi)
        t = np.cos(a) * x + np.sin(a) * y
        rad = rng.uniform(0.3, 1.0)
        z = np.sqrt(np.clip(rad**2 - t**2, 0, None))
    elif family == "pyramid":
        z = -np.maximum(np.abs(y - cy), np.abs(x - cx))
    else:
        raise ValueError(f"Unknown height family {family!r}; choose from {TRAIN_FAMILIES}.")
    z = z.astype(np.float32)
    lo, hi = float(z.min()), float(z.max())
    if hi - lo < 1e-6:
        return np.full((h, w), rng.random(), np.float32)
    return (z - lo) / (hi - lo)


# ---------------------------------------------------------------------------------------
# Textures
# ---------------------------------------------------------------------------------------


def render_texture(h: int, w: int, rng: np.random.Generator, p_blank_patch: float = 0.35) -> np.ndarray:
    """A random in-focus texture in [0, 1] (float32 ``(h, w)``)."""
    t = np.zeros((h, w), np.float32)
    kind = rng.integers(0, 4)
    n_scales = rng.integers(1, 4)
    for _ in range(n_scales):
        s = float(np.exp(rng.uniform(np.log(0.6), np.log(6.0))))
        t += rng.uniform(0.3, 1.0) * ndi.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), s)
    t = (t - t.mean()) / (t.std() + 1e-6)
    if kind == 1:  # blobs / particles
        m = rng.random((h, w)) < rng.uniform(0.002, 0.03)
        blobs = ndi.gaussian_filter(m.astype(np.float32), rng.uniform(0.7, 2.5))
        t = 0.4 * t + 3 * blobs / (blobs.max() + 1e-6)
    elif kind == 2:  # scratches / lines
        a = rng.uniform(0, np.pi)
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        u = np.cos(a) * x + np.sin(a) * y
        t = 0.6 * t + np.sign(np.sin(u / rng.uniform(1.0, 4.0) + 0.5 * t))
    elif kind == 3:  # binarised (high-contrast) pattern
        t = np.tanh(t * rng.uniform(1.0, 5.0))
    t = (t - t.min()) / (t.max() - t.min() + 1e-6)
    # contrast varies over the field; some patches are nearly textureless
    contrast = np.clip(0.5 + 0.5 * _smooth_noise(rng, h, w, rng.uniform(10, 30)) * rng.uniform(0, 1.2), 0.05, 1)
    if rng.random() < p_blank_patch:
        blank = _smooth_noise(rng, h, w, rng.uniform(6, 20)) > rng.uniform(0.3, 1.2)
        contrast = np.where(blank, contrast * rng.uniform(0.0, 0.15), contrast)
    mean = rng.uniform(0.2, 0.8)
    return np.clip(mean + (t - 0.5) * contrast, 0, 1).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Stacks
# ---------------------------------------------------------------------------------------


def _blur_pyramid(img: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Gaussian-blurred copies ``(L, ...)`` of an ``(H, W)`` or ``(H, W, C)`` image."""
    out = np.empty((len(sigmas),) + img.shape, np.float32)
    for i, s in enumerate(sigmas):
        if s < 0.05:
            out[i] = img
        elif img.ndim == 3:
            out[i] = ndi.gaussian_filter(img, (s, s, 0), mode="reflect", truncate=3.0)
        else:
            out[i] = ndi.gaussian_filter(img, s, mode="reflect", truncate=3.0)
    return out


def render_stack(
    depth_index: np.ndarray,
    texture: np.ndarray,
    n_frames: int,
    blur_per_step: float,
    base_blur: float = 0.0,
    n_levels: int = 14,
) -> np.ndarray:
    """Render frames whose blur grows with ``|frame − depth|``.

    Parameters
    ----------
    depth_index
        ``(H, W)`` fractional frame index at which each pixel is in focus.
    texture
        ``(H, W)`` or ``(H, W, C)`` in-focus radiance.
    n_frames
        Number of frames N.
    blur_per_step
        Gaussian sigma in pixels per frame of defocus.
    base_blur
        Sigma of the in-focus PSF.

    Returns
    -------
    numpy.ndarray
        ``(N, H, W[, C])`` float32 frames.
    """
    smax = math.hypot(base_blur, blur_per_step * n_frames) + 1e-3
    smax = min(smax, 40.0)
    # levels spaced so that interpolation errors stay small at all blur sizes
    sig = np.concatenate([[0.0], np.geomspace(0.3, smax, n_levels - 1)]).astype(np.float32)
    pyr = _blur_pyramid(texture, sig)
    k = np.arange(n_frames, dtype=np.float32).reshape(-1, 1, 1)
    s = np.sqrt(base_blur**2 + (blur_per_step * (k - depth_index[None])) ** 2)
    s = np.clip(s, 0, smax)
    lev = np.interp(s.ravel(), sig, np.arange(len(sig), dtype=np.float32)).reshape(s.shape)
    i0 = np.clip(np.floor(lev).astype(np.int64), 0, len(sig) - 2)
    f = (lev - i0).astype(np.float32)
    hh, ww = depth_index.shape
    yy, xx = np.mgrid[0:hh, 0:ww]
    a = pyr[i0, yy[None], xx[None]]
    b = pyr[i0 + 1, yy[None], xx[None]]
    if texture.ndim == 3:
        f = f[..., None]
    return a * (1 - f) + b * f


@dataclass
class TrainingSample:
    """One training sample: raw frames (any dtype) and the in-focus frame index per pixel."""

    frames: np.ndarray  # (N, H, W) or (N, H, W, 3)
    depth_index: np.ndarray  # (H, W) float32 in [0, N-1]
    family: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class SyntheticFocusDataset:
    """Random focus stacks rendered on the fly.

    Parameters
    ----------
    config
        Ranges of the random draws.
    seed
        Seed of the random generator (each call to :meth:`sample` advances it).

    Examples
    --------
    >>> ds = SyntheticFocusDataset(seed=0)
    >>> s = ds.sample(n_frames=10, size=(48, 40))
    >>> s.frames.shape[:3], s.depth_index.shape
    ((10, 48, 40), (48, 40))
    """

    def __init__(self, config: RenderConfig | None = None, seed: int = 0) -> None:
        self.config = config or RenderConfig()
        self.rng = np.random.default_rng(seed)

    def sample(
        self,
        n_frames: int | None = None,
        size: tuple[int, int] | None = None,
        rgb: bool | None = None,
        family: str | None = None,
        dtype: str | None = None,
    ) -> TrainingSample:
        """Draw one random stack (arguments left ``None`` are drawn at random)."""
        c, rng = self.config, self.rng
        n = int(n_frames if n_frames is not None else rng.integers(c.n_frames[0], c.n_frames[1] + 1))
        if size is None:
            h = int(rng.integers(c.size[0], c.size[1] + 1))
            size = (h, h)
        h, w = size
        rgb = bool(rng.random() < c.p_rgb) if rgb is None else rgb
        family = family or str(rng.choice(list(c.families)))
        # height -> in-focus frame index; the surface may cover part of the range and be
        # partly outside it (then it is clipped, as in a real stack that misses a region)
        z = render_height(family, h, w, rng)
        if rng.random() < 0.25:
            z = np.clip(z + 0.1 * rng.random() * _smooth_noise(rng, h, w, rng.uniform(3, 15)), 0, None)
            z = (z - z.min()) / (z.max() - z.min() + 1e-6)
        frac = rng.uniform(*c.height_fraction)
        span = frac * (n - 1)
        lo = rng.uniform(-0.1 * (n - 1), (n - 1) - span + 0.1 * (n - 1))
        depth = np.clip(lo + z * span, 0, n - 1).astype(np.float32)
        tex = render_texture(h, w, rng, c.p_blank_patch)
        if rgb:
            tint = rng.uniform(0.3, 1.0, 3).astype(np.float32)
            tex2 = render_texture(h, w, rng, 0.0)
            mix = rng.uniform(0, 0.5)
            tex = np.stack([(1 - mix) * tex + mix * tex2 * rng.random() for _ in range(3)], -1) * tint
        bps = float(np.exp(rng.uniform(np.log(c.blur_per_step[0]), np.log(c.blur_per_step[1]))))
        frames = render_stack(depth, tex, n, bps, rng.uniform(*c.base_blur))
        # illumination drift, gamma, noise
        frames *= (1 + rng.uniform(-0.08, 0.08) * np.linspace(-1, 1, n, dtype=np.float32)).reshape(
            (-1,) + (1,) * (frames.ndim - 1)
        )
        frames = np.clip(frames, 0, None) ** rng.uniform(*c.gamma)
        sigma_n = rng.uniform(*c.noise)
        if sigma_n > 0:
            frames = frames + rng.standard_normal(frames.shape).astype(np.float32) * sigma_n * np.sqrt(
                0.3 + frames
            )
        # augmentation: flips, 90° rotations, reversed acquisition order
        k = int(rng.integers(0, 4)) if h == w else 2 * int(rng.integers(0, 2))  # keep (h, w)
        frames = np.rot90(frames, k, axes=(1, 2))
        depth = np.rot90(depth, k)
        if rng.random() < 0.5:
            frames, depth = frames[:, :, ::-1], depth[:, ::-1]
        if rng.random() < 0.5:
            frames, depth = frames[::-1], (n - 1) - depth
        frames = np.ascontiguousarray(frames)
        depth = np.ascontiguousarray(depth)
        # quantisation: 8-bit, 16-bit or float, with a random gain and offset
        dtype = dtype or str(rng.choice(["uint8", "uint16", "float32"], p=[0.45, 0.35, 0.2]))
        if dtype == "uint8":
            frames = np.clip(frames * rng.uniform(120, 250) + rng.uniform(0, 20), 0, 255).astype(np.uint8)
        elif dtype == "uint16":
            frames = np.clip(frames * rng.uniform(500, 60000) + rng.uniform(0, 500), 0, 65535).astype(np.uint16)
        else:
            frames = (frames * rng.uniform(0.1, 10) + rng.uniform(-1, 1)).astype(np.float32)
        return TrainingSample(
            frames, depth.astype(np.float32), family, {"blur_per_step": bps, "rgb": rgb, "dtype": dtype}
        )

    def batch(self, batch_size: int, n_frames: int | None = None, size: int | None = None, rgb: bool | None = None) -> list[TrainingSample]:
        """Samples sharing N, size and colour mode (so they can be stacked into a tensor)."""
        c, rng = self.config, self.rng
        n = int(n_frames if n_frames is not None else rng.integers(c.n_frames[0], c.n_frames[1] + 1))
        s = int(size if size is not None else rng.integers(c.size[0] // 16, c.size[1] // 16 + 1) * 16)
        rgb = bool(rng.random() < c.p_rgb) if rgb is None else rgb
        return [self.sample(n, (s, s), rgb) for _ in range(batch_size)]


# ---------------------------------------------------------------------------------------
# Micro 3D datasets as training samples
# ---------------------------------------------------------------------------------------


def micro3d_training_sample(
    dataset: Micro3DDataset, i: int, rng: np.random.Generator, crop: int | None = None
) -> TrainingSample:
    """Sample ``i`` of a Micro 3D dataset with random crop, flips, rotation and gamma."""
    s = dataset[i]
    frames, depth = s.frames, s.depth_index
    h, w = depth.shape
    if crop is not None and crop < min(h, w):
        y0, x0 = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        frames, depth = frames[:, y0 : y0 + crop, x0 : x0 + crop], depth[y0 : y0 + crop, x0 : x0 + crop]
    k = int(rng.integers(0, 4))
    frames, depth = np.rot90(frames, k, axes=(1, 2)), np.rot90(depth, k)
    if rng.random() < 0.5:
        frames, depth = frames[:, :, ::-1], depth[:, ::-1]
    f = frames.astype(np.float32)
    lo, hi = float(f.min()), float(f.max())
    f = ((f - lo) / (hi - lo + 1e-6)) ** rng.uniform(0.7, 1.4)
    return TrainingSample(np.ascontiguousarray(f), np.ascontiguousarray(depth), s.name)
