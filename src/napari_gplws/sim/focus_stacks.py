"""Physics-based synthetic focus stacks with ground-truth depth.

What it is for: tests, demos, the bundled sample, the held-out benchmark and part of the
training data of the depth-from-focus network. The height maps (:mod:`.heights`), textures
(:mod:`.textures`) and the depth-dependent blur (:mod:`.defocus_render`) live beside it. A synthetic stack is made of three independent random choices:

* a **height map** (:data:`HEIGHT_FAMILIES`: tilted planes, terraces, pits and holes,
  spherical caps, waves, smooth random fields), normalised to ``[0, 1]`` and mapped
  linearly onto a depth range in µm;
* a **texture** (:data:`TEXTURES`: images bundled inside scikit-image, never downloaded,
  and procedural ones) seen through a random crop, zoom, rotation and flip: the sharp
  radiance of the surface;
* a **camera**: thin-lens defocus, shot and read noise, gamma, 8/16-bit or float output,
  grayscale or RGB.

Depth convention (the project's): the depth of a pixel is the focus-drive position, in µm,
at which that pixel is sharpest, on the same axis as the stack's focus positions. Frame
``k`` taken at focus position ``f_k`` sees a point at depth ``z`` blurred by a Gaussian of
standard deviation (pixels)

    ``sigma = sqrt(blur_floor_px**2 + (blur_px_per_um * |z - f_k|)**2)``.

For a thin lens the geometric blur disc grows linearly with defocus (radius about
``NA / n_medium * |dz|`` in object space for small NA; a disc of radius ``r`` has a standard
deviation of ``r / 2``); the floor stands for diffraction and pixel integration.

Rendering approximation (layered, normalised convolution). The depth range of the field
is cut into ``L`` layers at depths ``z_l``; every pixel belongs to its two nearest layers
with linear weights ``w_l(x)`` (``sum_l w_l = 1``). For each frame

    ``out = sum_l G_l * (T w_l) / sum_l G_l * w_l``,

where ``T`` is the sharp texture and ``G_l`` the Gaussian of the layer's blur at that
frame. The denominator renormalises brightness where layers of different blur meet. The
approximation ignores occlusion (a blurred foreground does not hide the background) and
the asymmetry of real PSFs above and below focus: fine for shallow microscope relief, not
a ray tracer. ``L`` is at most ``n_layers`` (32 by default: 0.1–0.2 grey levels RMS, 99th
percentile under 1, from a 160-layer rendering, at 8 bits), fewer when the blur changes by
less than 0.25 px between layers. Blurs are applied in the Fourier domain: the Gaussian
transfer function is separable and is evaluated only on the band where each 1-D factor
exceeds ``1e-3``. The scene is first padded by mirror reflection (2.5 sigma of the widest
blur, at most 32 px) so that borders behave like
``scipy.ndimage.gaussian_filter(mode="reflect")``; blur wider than the padding wraps
around, which only touches the most defocused, nearly uniform frames. A flat surface
renders exactly as ``gaussian_filter`` (tested).

Camera: intensity = ``lo + (hi - lo) * texture`` (``intensity_range``), Poisson shot noise
for ``photons`` electrons at full scale (drawn exactly below 30 expected electrons, as a
Gaussian of equal variance above), Gaussian read noise, clipping to ``[0, 1]``,
``signal ** gamma``, then rounding to 8 or 16 bits (or float32).

Speed: about 0.2 s for 20 grayscale frames of 256×256 on two CPU cores (about twice that
in RGB); the cost grows with frames × layers.

What it is not: an optical simulator with aberrations (the sign of defocus can only be
learnt from aberrated PSFs, see :mod:`napari_gplws.sim.psf`; this module's blur is symmetric
in defocus),
nor a reader of real data.

Examples
--------
>>> s = synthetic_stack(family="waves", n_frames=12, shape=(64, 64), seed=1)
>>> s.stack.frames.shape, s.stack.frames.dtype, s.depth_um.dtype
((12, 64, 64), dtype('uint8'), dtype('float32'))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from napari_gplws.errors import SynthError
from napari_gplws.sim.defocus_render import defocus_render
from napari_gplws.sim.heights import (
    HEIGHT_FAMILIES,
    _check_shape,
    height_map,
)
from napari_gplws.sim.textures import (
    TEXTURES,
    _colourise,
    _textured_view,
    _to_gray,
    available_textures,
    texture_image,
)
from napari_gplws.stack import UNIT_UM, FocalStack, validate_focus_positions

__all__ = [
    "HEIGHT_FAMILIES",
    "TEXTURES",
    "SynthParams",
    "SyntheticStack",
    "available_textures",
    "defocus_render",
    "height_map",
    "random_training_stack",
    "synthesize",
    "synthetic_stack",
    "texture_image",
]
_POISSON_EXACT_BELOW = 30.0  # expected electrons under which shot noise is drawn exactly








# ------------------------------------------------------------------------------------------
# Parameters and the synthetic stack
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SynthParams:
    """Every parameter of a synthetic stack (see :func:`synthetic_stack` for meanings).

    ``SynthParams.sample(rng)`` draws a random configuration for training; a params object
    plus a seed fully determines the arrays (:func:`synthesize`).
    """

    family: str = "waves"
    texture: str | None = None
    n_frames: int = 20
    shape: tuple[int, int] = (256, 256)
    depth_range_um: tuple[float, float] = (0.0, 40.0)
    focus_um: tuple[float, ...] | None = None
    invert_height: bool = False
    blur_px_per_um: float = 0.5
    blur_floor_px: float = 0.5
    n_layers: int = 32
    intensity_range: tuple[float, float] = (0.05, 0.95)
    photons: float | None = 5000.0
    read_noise: float = 0.003
    gamma: float = 1.0
    bit_depth: int = 8
    rgb: bool = False
    pixel_size_um: float = 1.0
    zoom_range: tuple[float, float] = (0.5, 2.0)

    @classmethod
    def sample(
        cls,
        rng: np.random.Generator,
        *,
        shape: tuple[int, int] = (256, 256),
        n_frames: tuple[int, int] = (8, 32),
        families: Sequence[str] = HEIGHT_FAMILIES,
        textures: Sequence[str] | None = None,
    ) -> SynthParams:
        """Draw a random configuration for training.

        Draws a family and a texture uniformly; 8–32 frames (``n_frames`` inclusive range);
        a focus travel of 5–100 µm starting anywhere in ``[-50, 50]`` µm, sometimes
        decreasing (30 %) or unevenly spaced (25 %); a surface occupying 30–100 % of the
        travel (height sometimes inverted); a blur of 0.3–3 px per focus step; in-focus
        blur 0.3–1 px; intensity range, photon count (200–20 000 or none), read noise
        (0–2 % of full scale), gamma (0.6–1.6), 8/16-bit or float, RGB in 30 % of draws.
        """
        n = int(rng.integers(n_frames[0], n_frames[1] + 1))
        span = float(rng.uniform(5.0, 100.0))
        start = float(rng.uniform(-50.0, 50.0))
        pos = np.linspace(start, start + span, n)
        step = span / (n - 1)
        if rng.random() < 0.25:  # uneven spacing; jitter < half a step keeps the order
            pos[1:-1] += rng.uniform(-0.4, 0.4, n - 2) * step
        if rng.random() < 0.3:
            pos = pos[::-1]
        width = span * float(rng.uniform(0.3, 1.0))
        lo = start + float(rng.uniform(0.0, span - width))
        per_step = float(np.exp(rng.uniform(np.log(0.3), np.log(3.0))))
        ilo = float(rng.uniform(0.0, 0.4))
        ihi = float(rng.uniform(ilo + 0.15, 1.0))
        texture_choices = tuple(textures) if textures is not None else available_textures()
        return cls(
            family=str(families[int(rng.integers(len(families)))]),
            texture=str(texture_choices[int(rng.integers(len(texture_choices)))]),
            n_frames=n,
            shape=(int(shape[0]), int(shape[1])),
            depth_range_um=(lo, lo + width),
            focus_um=tuple(float(p) for p in pos),
            invert_height=bool(rng.random() < 0.5),
            blur_px_per_um=per_step / step,
            blur_floor_px=float(rng.uniform(0.3, 1.0)),
            n_layers=48,
            intensity_range=(ilo, ihi),
            photons=None
            if rng.random() < 0.1
            else float(np.exp(rng.uniform(np.log(200.0), np.log(20000.0)))),
            read_noise=float(rng.uniform(0.0, 0.02)),
            gamma=float(np.exp(rng.uniform(np.log(0.6), np.log(1.6)))),
            bit_depth=int((8, 8, 16, 32)[int(rng.integers(4))]),
            rgb=bool(rng.random() < 0.3),
        )

    def to_metadata(self) -> dict[str, Any]:
        """JSON-friendly dict of the parameters (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True, eq=False)
class SyntheticStack:
    """A synthetic focus stack with its ground truth.

    Attributes
    ----------
    stack
        The :class:`FocalStack`: frames ``(N, H, W)`` or ``(N, H, W, 3)`` (uint8, uint16 or
        float32 in ``[0, 1]``), focus positions in µm, pixel size, ``source =
        "synthetic:<family>:<seed>"`` and ``metadata`` holding every parameter.
    depth_um
        ``(H, W)`` float32 ground-truth depth in µm: the focus position at which each
        pixel is sharpest, on the same axis as ``stack.focus_um``.
    texture
        ``(H, W)`` or ``(H, W, 3)`` float32 sharp radiance in ``[0, 1]`` after the intensity
        mapping, before noise and gamma: the ideal all-in-focus image.
    params
        The :class:`SynthParams` that made it.
    """

    stack: FocalStack
    depth_um: np.ndarray
    texture: np.ndarray
    params: SynthParams


def _default_focus(lo: float, hi: float, n: int) -> np.ndarray:
    """Evenly spaced positions covering ``[lo, hi]`` with half a step to spare at both ends."""
    margin = 0.5 * (hi - lo) / max(n - 1, 1)
    return np.linspace(lo - margin, hi + margin, n)


def _validate(p: SynthParams) -> None:
    if p.family not in HEIGHT_FAMILIES:
        raise SynthError(
            f"Unknown height-map family '{p.family}'; choose one of: {', '.join(HEIGHT_FAMILIES)}."
        )
    if p.texture is not None and p.texture not in TEXTURES:
        raise SynthError(f"Unknown texture '{p.texture}'; choose one of: {', '.join(TEXTURES)}.")
    if int(p.n_frames) < 2:
        raise SynthError(f"A focus stack needs at least 2 frames; got n_frames={p.n_frames}.")
    lo, hi = p.depth_range_um
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise SynthError(
            f"depth_range_um must be (low, high) µm with low < high; got {p.depth_range_um}."
        )
    if p.bit_depth not in (8, 16, 32):
        raise SynthError(f"bit_depth must be 8, 16 or 32 (float32); got {p.bit_depth}.")
    ilo, ihi = p.intensity_range
    if not 0.0 <= ilo < ihi <= 1.0:
        raise SynthError(
            f"intensity_range must satisfy 0 <= low < high <= 1; got {p.intensity_range}."
        )
    if p.photons is not None and not p.photons > 0:
        raise SynthError(f"photons must be positive (or None for no shot noise); got {p.photons}.")
    if not p.read_noise >= 0 or not p.gamma > 0:
        raise SynthError(
            f"read_noise must be >= 0 and gamma > 0; got {p.read_noise} and {p.gamma}."
        )
    if not p.n_layers >= 1:
        raise SynthError(f"n_layers must be at least 1; got {p.n_layers}.")


def _add_noise(
    signal: np.ndarray, photons: float | None, read_noise: float, rng: np.random.Generator
) -> np.ndarray:
    """Shot noise (``photons`` electrons at full scale) plus Gaussian read noise, clipped to [0, 1].

    Shot noise is exact Poisson where fewer than :data:`_POISSON_EXACT_BELOW` electrons are
    expected and its Gaussian approximation (same mean and variance, about 5x faster)
    elsewhere; the read noise is added to the same Gaussian draw.
    """
    var = np.full(signal.shape, np.float32(read_noise**2), np.float32)
    if photons is not None:
        var += signal / np.float32(photons)
    out = signal + np.sqrt(var) * rng.standard_normal(signal.shape, dtype=np.float32)
    if photons is not None:
        low = signal * np.float32(photons) < _POISSON_EXACT_BELOW
        if low.any():
            exact = rng.poisson(signal[low] * photons) / photons
            out[low] = exact + read_noise * rng.standard_normal(exact.shape, dtype=np.float32)
    return np.clip(out, 0.0, 1.0, out=out)


def _as_generator(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def synthesize(
    params: SynthParams,
    seed: int | np.random.Generator = 0,
    *,
    texture_image_override: np.ndarray | None = None,
) -> SyntheticStack:
    """Render the synthetic stack described by ``params``.

    Parameters
    ----------
    params
        All parameters (see :func:`synthetic_stack`).
    seed
        Integer seed or a generator. Height map, texture and noise use three independent
        streams spawned from ``np.random.default_rng(seed)``, so e.g. changing the noise
        level keeps the same surface and texture.
    texture_image_override
        Use this ``(H, W)`` / ``(H, W, 3)`` image (float in ``[0, 1]`` or integer, full range)
        as the texture instead of ``params.texture``; it is resampled by a random view if
        its size differs from ``params.shape``.

    Returns
    -------
    SyntheticStack

    Raises
    ------
    SynthError
        Invalid parameters.
    """
    _validate(params)
    shape = _check_shape(params.shape)
    n = int(params.n_frames)
    rng_height, rng_texture, rng_noise = _as_generator(seed).spawn(3)

    # Ground truth.
    h = height_map(params.family, shape, rng_height)
    if params.invert_height:
        h = 1.0 - h
    lo, hi = (float(v) for v in params.depth_range_um)
    depth = lo + h * (hi - lo)
    focus = (
        _default_focus(lo, hi, n)
        if params.focus_um is None
        else np.asarray(params.focus_um, np.float64)
    )
    focus = validate_focus_positions(focus, n, "synthetic stack")  # fail before rendering

    # Sharp radiance.
    if texture_image_override is not None:
        tex = np.asarray(texture_image_override)
        if tex.dtype.kind in "ui":
            tex = tex.astype(np.float32) / np.float32(np.iinfo(tex.dtype).max)
        tex = np.clip(tex.astype(np.float32), 0.0, 1.0)
        if tex.ndim == 3:
            tex = tex[..., :3]
        if tex.shape[:2] != shape:
            tex = _textured_view(tex, shape, rng_texture, params.zoom_range)
        if params.rgb and tex.ndim == 2:
            tex = _colourise(tex, rng_texture)
        elif not params.rgb and tex.ndim == 3:
            tex = _to_gray(tex)
        texture_name = "array"
    else:
        texture_name = params.texture
        if texture_name is None:
            choices = available_textures()
            texture_name = choices[int(rng_texture.integers(len(choices)))]
        tex = texture_image(
            texture_name, shape, rng_texture, rgb=params.rgb, zoom_range=params.zoom_range
        )
    ilo, ihi = params.intensity_range
    radiance = (ilo + (ihi - ilo) * tex).astype(np.float32)

    # Optics, then the camera: photons -> shot noise -> read noise -> gamma -> quantisation.
    frames = defocus_render(
        radiance,
        depth,
        focus,
        blur_px_per_um=params.blur_px_per_um,
        blur_floor_px=params.blur_floor_px,
        n_layers=params.n_layers,
    )
    np.clip(frames, 0.0, 1.0, out=frames)
    frames = _add_noise(frames, params.photons, params.read_noise, rng_noise)
    if params.gamma != 1.0:
        np.power(frames, np.float32(params.gamma), out=frames)
    if params.bit_depth == 8:
        frames = np.round(frames * 255.0).astype(np.uint8)
    elif params.bit_depth == 16:
        frames = np.round(frames * 65535.0).astype(np.uint16)

    seed_label = seed if not isinstance(seed, np.random.Generator) else "generator"
    meta = params.to_metadata()
    meta.update(
        synthetic=True,
        texture=texture_name,
        seed=seed_label if isinstance(seed_label, str) else int(seed_label),
        focus_um=focus.tolist(),
        depth_units=UNIT_UM,
        depth_convention="focus position (µm) at which the pixel is sharpest",
        blur_model=(
            "sigma_px = sqrt(blur_floor_px^2 + (blur_px_per_um*|z-f|)^2); "
            "layered normalised convolution"
        ),
    )
    stack = FocalStack(
        frames,
        focus_um=focus,
        pixel_size_um=params.pixel_size_um,
        source=f"synthetic:{params.family}:{seed_label}",
        metadata=meta,
    )
    return SyntheticStack(
        stack=stack,
        depth_um=depth.astype(np.float32),
        texture=radiance,
        params=replace(
            params, texture=texture_name if texture_image_override is None else params.texture
        ),
    )


def synthetic_stack(
    *,
    family: str = "waves",
    texture: str | np.ndarray | None = None,
    n_frames: int = 20,
    shape: tuple[int, int] = (256, 256),
    depth_range_um: tuple[float, float] = (0.0, 40.0),
    focus_um: Sequence[float] | np.ndarray | None = None,
    invert_height: bool = False,
    blur_px_per_um: float = 0.5,
    blur_floor_px: float = 0.5,
    n_layers: int = 32,
    intensity_range: tuple[float, float] = (0.05, 0.95),
    photons: float | None = 5000.0,
    read_noise: float = 0.003,
    gamma: float = 1.0,
    bit_depth: int = 8,
    rgb: bool = False,
    pixel_size_um: float = 1.0,
    seed: int | np.random.Generator = 0,
) -> SyntheticStack:
    """A synthetic focus stack of a textured surface, with its ground-truth depth.

    Parameters
    ----------
    family
        Height-map family, one of :data:`HEIGHT_FAMILIES`.
    texture
        Texture name from :data:`TEXTURES`, an image array (``(H, W)`` or ``(H, W, 3)``,
        float in ``[0, 1]`` or integer), or ``None`` for a random bundled/procedural one.
    n_frames
        Number of frames N (>= 2).
    shape
        ``(H, W)`` frame size in pixels.
    depth_range_um
        ``(low, high)``: the height map's 0 maps to ``low`` and 1 to ``high`` µm (reversed
        when ``invert_height``). The ground truth lies in this interval.
    focus_um
        ``(N,)`` focus positions in µm, strictly monotonic (increasing, decreasing, uneven
        all work). Default: evenly spaced and increasing over the depth range with half a
        step of margin at each end, so every pixel is in focus somewhere in the stack.
    invert_height
        Use ``1 - h`` (pits become mesas, caps become dimples).
    blur_px_per_um
        Defocus blur: Gaussian standard deviation in pixels per µm of ``|depth - focus|``.
    blur_floor_px
        In-focus blur standard deviation in pixels, combined in quadrature.
    n_layers
        Maximum number of depth layers of the renderer (see :func:`defocus_render`).
    intensity_range
        Texture values 0 and 1 map to these fractions of full scale.
    photons
        Expected photo-electrons at full scale (Poisson shot noise), or ``None``.
    read_noise
        Standard deviation of Gaussian read noise, as a fraction of full scale.
    gamma
        Output ``= signal ** gamma`` after noise (1 = linear camera).
    bit_depth
        8 (uint8), 16 (uint16) or 32 (float32 in ``[0, 1]``).
    rgb
        Produce ``(N, H, W, 3)`` frames.
    pixel_size_um
        Lateral pixel size in µm, stored on the stack (the blur is given in pixels).
    seed
        Integer seed (or a generator). Same arguments and seed give identical arrays.

    Returns
    -------
    SyntheticStack
        ``.stack`` (:class:`FocalStack`), ``.depth_um`` (float32 ``(H, W)``), ``.texture``
        (float32 sharp radiance) and ``.params``.

    Raises
    ------
    SynthError
        Invalid parameters (unknown family or texture, fewer than 2 frames, ...).
    FocusPositionError
        ``focus_um`` not strictly monotonic or of the wrong length.

    Examples
    --------
    >>> f = np.linspace(50, 5, 10)
    >>> s = synthetic_stack(family="plane", n_frames=10, shape=(32, 32), focus_um=f)
    >>> s.stack.units, bool(s.stack.focus_um[0] > s.stack.focus_um[-1])
    ('µm', True)
    """
    override = None
    tex_name: str | None
    if isinstance(texture, np.ndarray):
        override, tex_name = texture, None
    else:
        tex_name = texture
    params = SynthParams(
        family=family,
        texture=tex_name,
        n_frames=int(n_frames),
        shape=(int(shape[0]), int(shape[1])),
        depth_range_um=(float(depth_range_um[0]), float(depth_range_um[1])),
        focus_um=None
        if focus_um is None
        else tuple(float(v) for v in np.asarray(focus_um).ravel()),
        invert_height=bool(invert_height),
        blur_px_per_um=float(blur_px_per_um),
        blur_floor_px=float(blur_floor_px),
        n_layers=int(n_layers),
        intensity_range=(float(intensity_range[0]), float(intensity_range[1])),
        photons=None if photons is None else float(photons),
        read_noise=float(read_noise),
        gamma=float(gamma),
        bit_depth=int(bit_depth),
        rgb=bool(rgb),
        pixel_size_um=float(pixel_size_um),
    )
    return synthesize(params, seed, texture_image_override=override)


def random_training_stack(rng: np.random.Generator, **sample_options: Any) -> SyntheticStack:
    """A stack with a random configuration (:meth:`SynthParams.sample`) drawn from ``rng``.

    ``sample_options`` are passed to :meth:`SynthParams.sample` (``shape``, ``n_frames``,
    ``families``, ``textures``). Training must use seeds disjoint from the evaluation set.
    """
    params = SynthParams.sample(rng, **sample_options)
    return synthesize(params, rng)
