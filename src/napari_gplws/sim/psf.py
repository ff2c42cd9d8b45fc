"""Scalar widefield point-spread functions with defocus and realistic aberration.

What it is for: the physical defocus simulator (:mod:`napari_gplws.sim.defocus_tiles`) that trains and tests
the single-frame defocus network (LDSE-NET). It computes the 2-D intensity PSF, in the
sample plane, of a widefield microscope focused some µm of focus-drive travel away from a
thin specimen, including the spherical aberration caused by a refractive-index mismatch
between the immersion medium and the sample and small random Zernike aberrations. Only an
aberrated PSF tells above-focus from below-focus: an unaberrated PSF is exactly symmetric
in defocus, so the sign of defocus could never be learnt from it.

What it is not: a vectorial (high-NA polarisation) model, a 3-D PSF generator for
deconvolution, or a model of partially coherent brightfield illumination (brightfield is
treated as incoherent imaging of the specimen's transmission, a fair approximation under
Köhler illumination with the condenser aperture opened to the objective's NA).

Why our own model and not a library
-----------------------------------
Two maintained, licence-compatible Python libraries were checked (November 2026):

* ``psf-generator`` 0.1.0 (MIT) was seen returning NaN in its Gibson-Lanni mode for a dry
  objective (immersion index 1.0) and widening the unaberrated PSF;
* ``pyotf`` 0.0.3 (Apache-2.0) fails at import (it needs ``dphtools``, which it does not
  declare) and has no immersion/sample mismatch model.

Neither passes the Airy-pattern check, so this module is a small scalar pupil-function
model of our own, checked by ``tests/test_psf.py`` against the analytic Airy pattern (in
focus, no aberration), against matched-index symmetry (``PSF(+δ) == PSF(-δ)``) and for
asymmetry under index mismatch.

Model
-----
A point of a thin specimen lies ``depth_um`` below the coverslip in a medium of index
``n_sample``; the dry or immersion objective (index ``n_immersion``) is designed to focus
on the coverslip's lower surface. Moving the focus drive by ``drive_um`` *towards the
specimen* (objective closer to it, nominal focal plane deeper in the sample) gives, in the
Gibson-Lanni approximation with a coverslip of design thickness and index, the optical
path difference across the pupil (normalised pupil radius ``ρ``, ``sin θ = NA ρ / n``)::

    OPD(ρ) = n_sample · depth · cos θ_sample(ρ) − n_immersion · drive · cos θ_immersion(ρ)
             + λ · Σ_j c_j Z_j(ρ, φ)

With matched indices the first two terms are pure defocus about ``drive = depth`` and the
PSF is symmetric about it; with a mismatch they are not, and the best focus is shifted
(the "focal shift"), which :func:`best_focus_um` finds numerically (maximum sharpness,
the notion a focus curve measures; see there). The
pupil ``A(ρ) exp(2πi OPD/λ)`` (uniform amplitude with a one-sample anti-aliased edge) is
Fourier transformed; the intensity ``|FFT|²`` is summed over the wavelengths (each
normalised first), computed at ``oversample``× finer pixels and binned to the camera
pixel (pixel integration). Zernike terms use Noll normalisation (rms 1 wave per unit
coefficient over the unit disc).

Defocus sign (the project's convention): ``defocus = frame's drive position − best-focus
drive position``. In this module a positive value means the objective is *closer to the
specimen* than at best focus (the focal plane lies deeper than the object).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import fft as sfft
from scipy import optimize
from scipy.special import j1

__all__ = [
    "FOCUS_CRITERIA",
    "OPTICS_20X",
    "OPTICS_40X",
    "PRESETS",
    "ZERNIKE_NAMES",
    "Optics",
    "airy_pattern",
    "best_focus_um",
    "depth_of_field_um",
    "psf_2d",
    "pupil_opd_um",
    "zernike",
]


@dataclass(frozen=True)
class Optics:
    """Optics of a widefield microscope, in the sample plane.

    Parameters
    ----------
    na
        Numerical aperture of the objective.
    magnification
        Nominal magnification (informative; the pixel size is what the PSF uses).
    pixel_size_um
        Camera pixel size projected into the sample plane, µm.
    wavelengths_um
        Wavelengths (µm) whose PSFs are averaged (a coarse model of a broad spectrum).
    n_immersion
        Refractive index of the immersion medium (1.0 for a dry objective).
    n_sample
        Refractive index of the medium the specimen sits in (mounting medium, tissue).
    name
        Label used in model cards.
    """

    na: float = 0.75
    magnification: float = 20.0
    pixel_size_um: float = 0.25
    wavelengths_um: tuple[float, ...] = (0.50, 0.55, 0.60)
    n_immersion: float = 1.0
    n_sample: float = 1.45
    name: str = "20x/0.75 dry"

    def __post_init__(self) -> None:
        if not (0 < self.na < min(self.n_immersion, 1.6)):
            raise ValueError(
                f"NA must be positive and below the immersion index {self.n_immersion}; got {self.na}."
            )
        if self.pixel_size_um <= 0:
            raise ValueError(f"pixel_size_um must be positive; got {self.pixel_size_um}.")
        if not self.wavelengths_um or min(self.wavelengths_um) <= 0:
            raise ValueError(f"wavelengths_um must be positive; got {self.wavelengths_um}.")

    @property
    def wavelength_um(self) -> float:
        """Mean wavelength in µm."""
        return float(np.mean(self.wavelengths_um))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["wavelengths_um"] = list(self.wavelengths_um)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Optics:
        d = dict(d)
        if "wavelengths_um" in d:
            d["wavelengths_um"] = tuple(float(v) for v in d["wavelengths_um"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


#: 20×/0.75 dry objective, 0.25 µm pixels (e.g. 5 µm camera pixels), visible light.
OPTICS_20X = Optics()
#: 40×/0.65 dry objective, 0.125 µm pixels.
OPTICS_40X = Optics(na=0.65, magnification=40.0, pixel_size_um=0.125, name="40x/0.65 dry")
PRESETS: dict[str, Optics] = {"20x": OPTICS_20X, "40x": OPTICS_40X}

# Noll-indexed Zernike terms we use as small random aberrations: name -> (n, m).
_ZERNIKE_NM: dict[str, tuple[int, int]] = {
    "astig_oblique": (2, -2),
    "astig_vertical": (2, 2),
    "coma_vertical": (3, -1),
    "coma_horizontal": (3, 1),
    "trefoil_vertical": (3, -3),
    "trefoil_oblique": (3, 3),
    "spherical": (4, 0),
}
ZERNIKE_NAMES: tuple[str, ...] = tuple(_ZERNIKE_NM)
_PUPIL_SAMPLES = 24  # minimum frequency samples across the pupil radius


def airy_pattern(r_um: np.ndarray, na: float, wavelength_um: float) -> np.ndarray:
    """Analytic in-focus intensity of an aberration-free circular pupil, peak 1.

    ``I(r) = (2 J1(v) / v)**2`` with ``v = 2π NA r / λ``. ``r_um`` in µm.
    """
    v = 2.0 * np.pi * na * np.asarray(r_um, dtype=np.float64) / wavelength_um
    safe = np.where(v == 0, 1.0, v)
    return np.where(v == 0, 1.0, (2.0 * j1(safe) / safe) ** 2)


def zernike(name: str, rho: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Noll-normalised Zernike polynomial (rms 1 over the unit disc) at ``(ρ, φ)``."""
    n, m = _ZERNIKE_NM[name]
    am = abs(m)
    radial = np.zeros_like(rho)
    for k in range((n - am) // 2 + 1):
        c = (
            (-1) ** k
            * math.factorial(n - k)
            / (
                math.factorial(k)
                * math.factorial((n + am) // 2 - k)
                * math.factorial((n - am) // 2 - k)
            )
        )
        radial = radial + c * rho ** (n - 2 * k)
    if m == 0:
        return math.sqrt(n + 1) * radial
    ang = np.cos(am * phi) if m > 0 else np.sin(am * phi)
    return math.sqrt(2 * (n + 1)) * radial * ang


def pupil_opd_um(
    rho: np.ndarray,
    optics: Optics,
    drive_um: float,
    depth_um: float = 0.0,
    n_sample: float | None = None,
) -> np.ndarray:
    """Gibson-Lanni optical path difference (µm) over the normalised pupil radius ``ρ ≤ 1``.

    ``drive_um`` is the focus-drive travel towards the specimen from the position focused
    on the coverslip; ``depth_um`` the specimen's depth below the coverslip in a medium of
    index ``n_sample`` (default ``optics.n_sample``). Zernike terms are not included.
    """
    ns = optics.n_sample if n_sample is None else float(n_sample)
    ni = optics.n_immersion
    s = optics.na * np.clip(rho, 0.0, 1.0)
    cos_s = np.sqrt(np.maximum(1.0 - (s / ns) ** 2, 0.0))
    cos_i = np.sqrt(np.maximum(1.0 - (s / ni) ** 2, 0.0))
    return ns * depth_um * cos_s - ni * drive_um * cos_i


@functools.lru_cache(maxsize=16)
def _pupil_grid(
    n: int, dx_um: float, na: float, wavelength_um: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ρ, φ, amplitude) on an ``n × n`` FFT grid for sample spacing ``dx_um``."""
    f = sfft.fftfreq(n, d=dx_um)  # cycles / µm
    fy, fx = np.meshgrid(f, f, indexing="ij")
    fr = np.hypot(fx, fy)
    rho = fr * wavelength_um / na
    drho = (f[1] - f[0]) * wavelength_um / na  # one frequency sample in ρ units
    amp = np.clip((1.0 - rho) / drho + 0.5, 0.0, 1.0)  # anti-aliased disc edge
    phi = np.arctan2(fy, fx)
    for a in (rho, phi, amp):
        a.setflags(write=False)
    return rho, phi, amp


def psf_2d(
    optics: Optics,
    drive_um: float,
    depth_um: float = 0.0,
    *,
    n_sample: float | None = None,
    zernike_waves: Mapping[str, float] | None = None,
    size_px: int = 129,
    pixel_size_um: float | None = None,
    oversample: int = 3,
) -> np.ndarray:
    """Intensity PSF in the sample plane, normalised to unit sum.

    Parameters
    ----------
    optics
        Microscope optics (:class:`Optics`).
    drive_um
        Focus-drive travel (µm) towards the specimen, from focus on the coverslip.
    depth_um
        Depth of the specimen below the coverslip (µm) in ``n_sample``.
    n_sample
        Sample index (default ``optics.n_sample``).
    zernike_waves
        Extra aberration: Zernike name (:data:`ZERNIKE_NAMES`) -> coefficient in waves rms.
    size_px
        Side of the returned PSF in pixels (odd keeps the centre on a pixel).
    pixel_size_um
        Pixel size (default ``optics.pixel_size_um``).
    oversample
        Odd number of sub-pixels per pixel side; the PSF is computed on the finer grid and
        summed over each pixel (pixel integration). ``1`` samples at pixel centres.

    Returns
    -------
    numpy.ndarray
        ``(size_px, size_px)`` float64, sum 1, centred at ``size_px // 2``.
    """
    px = float(optics.pixel_size_um if pixel_size_um is None else pixel_size_um)
    ov = int(oversample)
    if ov < 1 or ov % 2 == 0:
        raise ValueError(
            f"oversample must be an odd positive integer (keeps the centre on a pixel); got {oversample}."
        )
    if size_px < 1 or size_px % 2 == 0:
        raise ValueError(f"size_px must be odd; got {size_px}.")
    dx = px / ov
    # FFT grid: at least the PSF crop, and >= _PUPIL_SAMPLES frequency samples across the
    # pupil radius (NA / λ) so that the pupil edge is well resolved.
    n = max(
        size_px * ov, math.ceil(_PUPIL_SAMPLES * max(optics.wavelengths_um) / (optics.na * dx)), 64
    )
    n = sfft.next_fast_len(n)
    out = np.zeros((size_px * ov, size_px * ov))
    for lam in optics.wavelengths_um:
        rho, phi, amp = _pupil_grid(n, dx, optics.na, float(lam))
        opd = pupil_opd_um(rho, optics, drive_um, depth_um, n_sample)
        phase = opd / lam
        if zernike_waves:
            for name, c in zernike_waves.items():
                if c:
                    phase = phase + c * zernike(name, np.minimum(rho, 1.0), phi)
        pupil = (amp * np.exp(2j * np.pi * phase)).astype(np.complex64)
        field_ = sfft.fftshift(sfft.ifft2(pupil))
        inten = field_.real**2 + field_.imag**2
        c0 = n // 2 - (size_px * ov) // 2
        crop = inten[c0 : c0 + size_px * ov, c0 : c0 + size_px * ov]
        out += crop / float(inten.sum(dtype=np.float64))
    if ov > 1:
        out = out.reshape(size_px, ov, size_px, ov).sum(axis=(1, 3))
    return out / out.sum()


def _focus_score(
    optics: Optics,
    drive_um: float,
    depth_um: float,
    n_sample: float | None,
    zernike_waves: Mapping[str, float] | None,
    criterion: str,
) -> float:
    if criterion == "peak":
        p = psf_2d(
            optics,
            drive_um,
            depth_um,
            n_sample=n_sample,
            zernike_waves=zernike_waves,
            size_px=33,
            oversample=1,
        )
        return float(p.max())
    p = psf_2d(
        optics, drive_um, depth_um, n_sample=n_sample, zernike_waves=zernike_waves, size_px=49
    )
    gy, gx = np.gradient(p)
    return float((gy * gy + gx * gx).sum())


FOCUS_CRITERIA = ("sharpness", "peak")


def best_focus_um(
    optics: Optics,
    depth_um: float = 0.0,
    *,
    n_sample: float | None = None,
    zernike_waves: Mapping[str, float] | None = None,
    search_um: float = 4.0,
    criterion: str = "sharpness",
) -> float:
    """Drive position (µm) of best focus.

    ``criterion="sharpness"`` (default) maximises the gradient energy ``Σ |∇PSF|²`` of the
    pixel-integrated PSF, which is the expected gradient energy of the image of a
    white-noise specimen: the same notion of "sharpest" as the peak of a focus curve
    (sum-modified-Laplacian, Tenengrad), which is how the project finds best focus in real
    stacks (depth from focus, :mod:`napari_gplws.defocus`). ``"peak"`` maximises the PSF's peak
    intensity (Strehl). Without aberration both give the paraxial focus; with strong
    spherical aberration they differ by a few tenths of a µm.

    Searched on a 0.4 µm grid (finer than the depth of field of NA ≤ 0.95 in visible light)
    within ``±search_um`` of the paraxial focus
    (``depth · n_immersion / n_sample``), then refined by a bounded scalar minimisation
    (to 1 nm) between the neighbours of the best grid point.
    """
    if criterion not in FOCUS_CRITERIA:
        raise ValueError(f"criterion must be one of {FOCUS_CRITERIA}; got {criterion!r}.")
    ns = optics.n_sample if n_sample is None else float(n_sample)
    centre = depth_um * optics.n_immersion / ns
    grid = centre + np.arange(-search_um, search_um + 1e-9, 0.4)
    scores = [_focus_score(optics, d, depth_um, n_sample, zernike_waves, criterion) for d in grid]
    k = int(np.argmax(scores))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    res = optimize.minimize_scalar(
        lambda d: -_focus_score(optics, d, depth_um, n_sample, zernike_waves, criterion),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-3},
    )
    return float(res.x)


def depth_of_field_um(optics: Optics) -> float:
    """Depth of field (µm, in drive travel) by the usual formula ``λ n / NA² + n e / (M NA)``.

    ``e`` is the camera pixel (``pixel_size_um · magnification``).
    """
    lam, n, na = optics.wavelength_um, optics.n_immersion, optics.na
    return lam * n / na**2 + n * optics.pixel_size_um / na
