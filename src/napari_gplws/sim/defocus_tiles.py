"""Simulated defocused microscope tiles with signed defocus labels, for LDSE-NET.

What it is for: training and testing the single-frame defocus network
(:mod:`napari_gplws.models.ldse`, :mod:`napari_gplws.training.ldse`) and the autofocus
tests. The depth-from-focus simulator (:mod:`.focus_stacks`) is a different one; this module
reuses its textures (:mod:`.textures`).

A *field* is one thin specimen seen through one set of optics at several focus-drive
positions. Each tile of a field is::

    camera( PSF(defocus, aberration) ⊛ specimen )

* **Specimen** (:data:`SPECIMENS`): brightfield-like absorbing tissue with H&E-like colours
  (Beer-Lambert mix of haematoxylin nuclei and eosin stroma), brightfield views of images
  bundled with scikit-image and of procedural textures (via :func:`napari_gplws.sim.focus_stacks.texture_image`),
  and fluorescence-like sparse bright structures (spots, filaments) on a dark background.
  :data:`TRAIN_SPECIMENS` and :data:`TEST_SPECIMENS` do not overlap: the test set uses
  specimens never seen in training, and aberration configurations drawn from a different
  seed.
* **PSF** (:mod:`napari_gplws.sim.psf`): scalar pupil model with spherical aberration from the index
  mismatch of a specimen ``2–25 µm`` deep in a medium of index ``1.33–1.52`` seen by a dry
  objective, plus small random Zernike terms (astigmatism, coma, trefoil, spherical;
  ``0.04`` waves rms each by default). PSFs are precomputed once per configuration on a
  0.25 µm defocus grid (:class:`PSFBank`, cached in memory) and linearly interpolated.
* **Camera**: smooth illumination fall-off, shot noise (Poisson), read noise (Gaussian),
  8-bit quantisation, and JPEG compression (quality 70–95) for half of the tiles.

* **Phase** (brightfield, 80 % of fields): real brightfield specimens are also weak phase
  objects, and defocus turns phase into intensity with a sign that flips through focus
  (transport of intensity). A phase map (correlated with the absorbance, plus independent
  positive granules; peak :data:`PHASE_RAD` = 0.2–1.5 rad) is imaged with the partially coherent weak-phase transfer
  function ``−2 sin(π λ dz f² / n_i)`` damped by the condenser cone (NA_c = 0.2–0.8 NA), see
  :meth:`DefocusSimulator._phase_transfer`, and added to the incoherent absorption image.
  This is the dominant sign cue of real brightfield frames; fluorescence has only the
  PSF's asymmetry.

Labels are signed defocus in µm of **focus-drive travel**, ``frame position − best-focus
position``, where the best focus of each aberration configuration is found numerically
(:func:`napari_gplws.sim.psf.best_focus_um`). A positive defocus means the objective is closer to the
specimen than at best focus (see :mod:`napari_gplws.sim.psf`).

What it is not: a depth-from-focus stack generator (:mod:`napari_gplws.sim.focus_stacks`), nor a reader of real
data (:mod:`napari_gplws.training.ldse_data`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

from napari_gplws.sim.psf import Optics
from napari_gplws.sim.psf_bank import PSFBank
from napari_gplws.sim.specimens import _FLUO, PHASE_RAD, SPECIMENS, TRAIN_SPECIMENS, specimen_image

__all__ = ["DefocusSimulator", "TileSet", "camera"]


# ------------------------------------------------------------------------------------------
# Camera
# ------------------------------------------------------------------------------------------
def _jpeg(img8: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img8).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("L" if img8.ndim == 2 else "RGB"))


def camera(
    intensity: np.ndarray,
    rng: np.random.Generator,
    *,
    photons: float,
    read_noise_e: float,
    jpeg_quality: int | None,
) -> np.ndarray:
    """Expose, add noise and quantise: relative intensity (≈[0, 1]) -> uint8 image.

    ``photons`` is the expected number of photo-electrons at relative intensity 1; 8-bit
    full scale is 255 at relative intensity 1. ``jpeg_quality`` (or ``None``) applies a
    real JPEG round trip.
    """
    e = rng.poisson(np.clip(intensity, 0, None) * photons).astype(np.float32)
    e += rng.normal(0.0, read_noise_e, e.shape).astype(np.float32)
    img8 = np.clip(np.rint(e * (255.0 / photons)), 0, 255).astype(np.uint8)
    if jpeg_quality is not None:
        img8 = _jpeg(img8, jpeg_quality)
    return img8


# ------------------------------------------------------------------------------------------
# Fields and tile sets
# ------------------------------------------------------------------------------------------
@dataclass
class TileSet:
    """Simulated tiles with labels.

    Attributes
    ----------
    tiles
        ``(M, T, T)`` uint8 grayscale or ``(M, T, T, 3)`` RGB.
    defocus_um
        ``(M,)`` float32 signed defocus in µm of drive travel.
    field_id
        ``(M,)`` int: tiles with the same id are the same specimen field at other
        defocus (splits must keep a field on one side).
    specimen
        ``(M,)`` specimen names.
    aberration
        ``(M,)`` index into the bank's aberration configurations.
    """

    tiles: np.ndarray
    defocus_um: np.ndarray
    field_id: np.ndarray
    specimen: np.ndarray
    aberration: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.defocus_um)


def _to_gray(rgb: np.ndarray) -> np.ndarray:
    return (rgb @ np.array([0.2125, 0.7154, 0.0721], np.float32)).astype(np.float32)


class DefocusSimulator:
    """Render defocused tiles of random specimens.

    Parameters
    ----------
    bank
        The :class:`PSFBank` (its optics set the pixel size).
    specimens
        Specimen names to draw from (:data:`TRAIN_SPECIMENS` or :data:`TEST_SPECIMENS`).
    rgb
        Return RGB tiles (brightfield in colour; fluorescence in one random colour) instead
        of grayscale.
    p_jpeg
        Probability of a JPEG round trip per field.
    p_partial
        Probability that a field is partly empty (a smooth mask removes specimen from up to
        half of it), so the network sees edges of specimens.
    p_phase, phase_rad
        Probability that a brightfield specimen is also a weak phase object, and the range
        of its peak phase (radians); see :meth:`_phase_transfer`.

    Examples
    --------
    >>> bank = PSFBank(n_configs=1, step_um=1.0, defocus_max_um=3, size_px=33)  # doctest: +SKIP
    >>> sim = DefocusSimulator(bank)  # doctest: +SKIP
    >>> ts = sim.tiles(np.random.default_rng(0), n_fields=2, per_field=3, tile_px=64)  # doctest: +SKIP
    """

    def __init__(
        self,
        bank: PSFBank,
        specimens: Sequence[str] = TRAIN_SPECIMENS,
        *,
        rgb: bool = False,
        p_jpeg: float = 0.5,
        p_partial: float = 0.15,
        defocus_max_um: float = 10.0,
        p_near: float = 0.6,
        near_um: float = 5.5,
        p_phase: float = 0.8,
        phase_rad: tuple[float, float] = PHASE_RAD,
    ) -> None:
        bad = [s for s in specimens if s not in SPECIMENS]
        if bad:
            raise ValueError(f"Unknown specimens {bad}; choose from {', '.join(SPECIMENS)}.")
        if defocus_max_um > bank.defocus_max_um:
            raise ValueError(
                f"defocus_max_um {defocus_max_um} exceeds the PSF bank's ±{bank.defocus_max_um} µm."
            )
        self.bank = bank
        self.specimens = tuple(specimens)
        self.rgb = rgb
        self.p_jpeg = p_jpeg
        self.p_partial = p_partial
        self.defocus_max_um = float(defocus_max_um)
        self.p_near = p_near
        self.near_um = min(near_um, defocus_max_um)
        self.p_phase = p_phase
        self.phase_rad = phase_rad

    @property
    def optics(self) -> Optics:
        return self.bank.optics

    def draw_defocus(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Defocus values: with probability ``p_near`` uniform in ±``near_um``, else in ±max."""
        near = rng.random(n) < self.p_near
        lim = np.where(near, self.near_um, self.defocus_max_um)
        return (rng.uniform(-1.0, 1.0, n) * lim).astype(np.float32)

    def render_field(
        self,
        rng: np.random.Generator,
        defocus_um: Sequence[float],
        *,
        tile_px: int = 224,
        specimen: str | None = None,
        aberration: int | None = None,
    ) -> tuple[np.ndarray, str, int]:
        """One specimen field at several defocus values.

        Returns
        -------
        tiles, specimen, aberration
            ``(K, T, T)`` uint8 (or ``(K, T, T, 3)``), the specimen name and the index of
            the aberration configuration used.
        """
        bank = self.bank
        name = (
            specimen
            if specimen is not None
            else str(self.specimens[int(rng.integers(len(self.specimens)))])
        )
        ab = int(rng.integers(bank.n_configs)) if aberration is None else int(aberration)
        pad = bank.size_px // 2
        size = tile_px + 2 * pad
        spec = specimen_image(name, (size, size), rng, bank.optics.pixel_size_um)
        fluo = name in _FLUO
        # Illumination fall-off / shading: smooth multiplicative field ±10 %.
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
        g = rng.normal(0, 0.1, 3)
        shade = (1.0 + g[0] * yy + g[1] * xx + g[2] * (yy * yy + xx * xx)).astype(np.float32)
        if rng.random() < self.p_partial:
            mask = ndi.gaussian_filter(rng.standard_normal((size // 16 + 1, size // 16 + 1)), 1.5)
            mask = ndi.zoom(mask, size / mask.shape[0], order=1)[:size, :size]
            mask = np.clip(
                (mask - np.quantile(mask, rng.uniform(0.2, 0.5))) * 8 / (mask.std() + 1e-6), 0, 1
            )
            spec = (
                (1.0 - mask[..., None]) * 1.0 + mask[..., None] * spec
                if spec.ndim == 3
                else spec * mask
            )
        phase_spec, phase_grid = None, None
        if not fluo and rng.random() < self.p_phase:
            phase_spec, phase_grid = self._phase_object(spec, rng, size)
        if fluo:
            colour = rng.uniform(0.2, 1.0, 3).astype(np.float32)
            bg = rng.uniform(0.01, 0.08)
            peak = rng.uniform(0.4, 0.95)
            scene = bg + (peak - bg) * spec
            photons = float(np.exp(rng.uniform(np.log(100), np.log(3000))))
        else:
            bright = rng.uniform(0.6, 0.95)
            scene = spec * bright
            photons = float(np.exp(rng.uniform(np.log(500), np.log(8000))))
        if not self.rgb:
            scene = _to_gray(scene) if scene.ndim == 3 else scene
        elif scene.ndim == 2:
            scene = scene[..., None] * colour
        scene = scene * (shade if scene.ndim == 2 else shade[..., None])
        chans = [scene] if scene.ndim == 2 else [scene[..., c] for c in range(3)]
        specs = [sfft.rfft2(c.astype(np.float32)) for c in chans]
        read = float(rng.uniform(0.5, 4.0))
        q = int(rng.integers(70, 96)) if rng.random() < self.p_jpeg else None
        out = []
        for dz in defocus_um:
            psf = bank.psf(ab, float(dz))
            otf = sfft.rfft2(psf, s=(size, size))
            blurred = [
                sfft.irfft2(s * otf, s=(size, size))[
                    2 * pad : 2 * pad + tile_px, 2 * pad : 2 * pad + tile_px
                ]
                for s in specs
            ]
            # (circular convolution with the PSF centred at `pad`: the valid part starts at 2·pad)
            img = blurred[0] if len(blurred) == 1 else np.stack(blurred, axis=-1)
            if phase_spec is not None:
                ph = sfft.irfft2(
                    phase_spec * self._phase_transfer(phase_grid, float(dz)), s=(size, size)
                )
                ph = bright * ph[pad : pad + tile_px, pad : pad + tile_px]
                img = img + (ph if img.ndim == 2 else ph[..., None])
            out.append(camera(img, rng, photons=photons, read_noise_e=read, jpeg_quality=q))
        return np.stack(out), name, ab

    def _phase_object(
        self, spec: np.ndarray, rng: np.random.Generator, size: int
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Spectrum of a weak phase map (radians) for a brightfield specimen, and the data
        of its transfer function (frequency grid, condenser NA, wavelength)."""
        gray = spec if spec.ndim == 2 else spec.mean(axis=-1)
        od = -np.log(np.clip(gray, 1e-3, 1.0))
        od = od / (float(od.max()) + 1e-6)
        # The part not tied to the stain: granules and organelles, *positive* bumps. Cells
        # are denser than the medium, so their phase delay is ≥ 0; a zero-mean random phase
        # field would look the same, contrast-inverted, on both sides of focus and carry no
        # sign at all (it drowned the sign cue in an earlier version of this simulator).
        grains = ndi.gaussian_filter(rng.standard_normal((size, size)), rng.uniform(1.0, 4.0))
        grains = np.maximum(grains - np.quantile(grains, rng.uniform(0.6, 0.9)), 0.0)
        grains = grains / (float(grains.max()) + 1e-6)
        phi = rng.uniform(*self.phase_rad) * (
            rng.uniform(0.3, 1.0) * od + rng.uniform(0.0, 0.5) * grains
        )
        optics = self.optics
        px = optics.pixel_size_um
        fy = sfft.fftfreq(size, d=px)[:, None]
        fx = sfft.rfftfreq(size, d=px)[None, :]
        grid = {
            "f2": (fy * fy + fx * fx).astype(np.float32),
            "na_c": float(rng.uniform(0.2, 0.8) * optics.na),
        }
        return sfft.rfft2(phi.astype(np.float32)), grid

    def _phase_transfer(self, grid: dict[str, Any], dz: float) -> np.ndarray:
        """Weak-phase transfer function at drive defocus ``dz`` (µm), partially coherent.

        ``PTF(f) = −2 sin(π λ dz f² / n_i) · exp(−(π f r)² / 2)`` within the partially
        coherent cutoff ``(NA + NA_c) / λ``, where ``r = |dz| NA_c / n_i`` is the blur of
        the illumination cone (condenser NA ``NA_c``) over the defocus. A positive ``dz``
        focuses upstream of the specimen (towards the condenser), where, by the transport of
        intensity equation, ``I ≈ I0 (1 + (λ dz / 2π) ∇²φ)``: the sign of phase contrast flips
        through focus, the strongest sign cue of real brightfield images.
        """
        o = self.optics
        lam, ni = o.wavelength_um, o.n_immersion
        f2 = grid["f2"]
        chi = np.pi * lam * dz * f2 / ni
        r = abs(dz) * grid["na_c"] / ni
        env = np.exp(-0.5 * (np.pi * r) ** 2 * f2)
        env = env * (f2 < ((o.na + grid["na_c"]) / lam) ** 2)
        return (-2.0 * np.sin(chi) * env).astype(np.float32)

    def tiles(
        self,
        rng: np.random.Generator,
        n_fields: int,
        per_field: int = 4,
        tile_px: int = 224,
        *,
        defocus_um: Sequence[float] | None = None,
        first_field_id: int = 0,
    ) -> TileSet:
        """``n_fields × per_field`` tiles: each field at ``per_field`` random defocus values
        (or at the given ``defocus_um`` values, the same for every field)."""
        tiles, dz_all, fid, names, abs_ = [], [], [], [], []
        for f in range(n_fields):
            dz = (
                self.draw_defocus(rng, per_field)
                if defocus_um is None
                else np.asarray(defocus_um, np.float32)
            )
            t, name, ab = self.render_field(rng, dz, tile_px=tile_px)
            tiles.append(t)
            dz_all.append(dz)
            fid += [first_field_id + f] * len(dz)
            names += [name] * len(dz)
            abs_ += [ab] * len(dz)
        return TileSet(
            np.concatenate(tiles),
            np.concatenate(dz_all).astype(np.float32),
            np.asarray(fid),
            np.asarray(names),
            np.asarray(abs_),
            meta={"optics": self.optics.to_dict(), "tile_px": tile_px},
        )
