"""Z-stacks from one simulated microscope: "your own instrument" for autofocus calibration.

What it is for: tests and measurements of the autofocus calibration
(:mod:`napari_gplws.training.calibrate`), which fine-tunes LDSE-NET on a user's own focus
stacks. A user's microscope has *one* optics: one objective, one immersion, one coverslip,
one way of mounting specimens. Its PSF is therefore the same, asymmetry included, in every
stack it takes; only the specimen field changes. :class:`Instrument` fixes all of that and
:func:`instrument_stack` renders focus stacks of new fields through it, with the true
best-focus position known, so calibrated weights can be scored on fields they never saw.

It reuses the defocus-tile simulator (:class:`~.defocus_tiles.DefocusSimulator`: specimens,
brightfield phase contrast, camera noise, JPEG) with a PSF bank of a single, fixed
aberration configuration (:class:`InstrumentBank`) instead of random ones. The PSF is the
scalar Gibson-Lanni pupil model of :mod:`.psf`:

* the specimen lies ``depth_um`` below the coverslip in a medium of index ``n_sample``
  (index mismatch with the immersion: the main source of the asymmetry through focus);
* a **coverslip** of thickness ``coverslip_um`` and index ``n_coverslip`` where the objective
  is designed for ``design_coverslip_um`` and ``design_n_coverslip`` adds the optical path
  ``n_g t_g cos θ_g − n_g* t_g* cos θ_g*``. :func:`~.psf.psf_2d` models one layer only, so
  this term enters through its Zernike projections: the part along primary spherical
  aberration (Noll Z11, the ``"spherical"`` term) is added to the instrument's own residual
  Zernike terms; its defocus part only moves the best focus, which is found numerically.

Labels follow the project's convention: ``defocus = frame position − best-focus position``
in µm of focus-drive travel, positive when the objective is closer to the specimen.

What it is not: a stack simulator for depth from focus (:mod:`.focus_stacks`) nor a
training-tile generator over many optics (:mod:`.defocus_tiles`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_gplws.sim.defocus_tiles import DefocusSimulator
from napari_gplws.sim.psf import Optics, best_focus_um, psf_2d, zernike
from napari_gplws.sim.psf_bank import Aberration, PSFBank
from napari_gplws.stack import FocalStack

__all__ = [
    "INSTRUMENTS",
    "Instrument",
    "InstrumentBank",
    "InstrumentStack",
    "coverslip_spherical_waves",
    "instrument_simulator",
    "instrument_stack",
    "psf_size_for",
]


@dataclass(frozen=True)
class Instrument:
    """One microscope: optics, specimen mounting, coverslip and residual aberrations.

    Parameters
    ----------
    optics
        Objective, pixel size, wavelengths, immersion index.
    depth_um, n_sample
        Depth of the specimen below the coverslip (µm) and the index of its medium.
    coverslip_um, n_coverslip
        Actual coverslip thickness (µm) and index.
    design_coverslip_um, design_n_coverslip
        The coverslip the objective is corrected for.
    zernike_waves
        The instrument's residual aberrations (Zernike name → waves rms).
    specimens
        Specimen kinds this microscope images (names of :mod:`.specimens`).
    p_phase
        Probability that a brightfield field is also a weak phase object.
    """

    name: str
    optics: Optics
    depth_um: float
    n_sample: float
    coverslip_um: float = 170.0
    n_coverslip: float = 1.523
    design_coverslip_um: float = 170.0
    design_n_coverslip: float = 1.523
    zernike_waves: tuple[tuple[str, float], ...] = ()
    specimens: tuple[str, ...] = ("he_tissue",)
    p_phase: float = 0.8

    def total_zernike(self) -> dict[str, float]:
        """Residual Zernike terms plus the coverslip mismatch's primary spherical term."""
        z = dict(self.zernike_waves)
        z["spherical"] = z.get("spherical", 0.0) + coverslip_spherical_waves(self)
        return z

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (optics, mounting, coverslip, Zernike terms)."""
        return {
            "name": self.name,
            "optics": self.optics.to_dict(),
            "specimen_depth_um": self.depth_um,
            "n_sample": self.n_sample,
            "coverslip_um": self.coverslip_um,
            "n_coverslip": self.n_coverslip,
            "design_coverslip_um": self.design_coverslip_um,
            "design_n_coverslip": self.design_n_coverslip,
            "zernike_waves": dict(self.zernike_waves),
            "coverslip_spherical_waves": coverslip_spherical_waves(self),
            "specimens": list(self.specimens),
        }


def coverslip_spherical_waves(inst: Instrument) -> float:
    """Primary spherical aberration (waves rms, Noll Z11) of a coverslip mismatch.

    The Gibson-Lanni coverslip term ``n_g t_g cos θ_g − n_g* t_g* cos θ_g*`` (``sin θ_g =
    NA ρ / n_g``) is projected on the Noll-normalised Z11 over the unit pupil, at the mean
    wavelength. Zero when the coverslip is the designed one.
    """
    o = inst.optics
    rho = np.linspace(0.0, 1.0, 801)
    s = o.na * rho

    def path(n: float, t: float) -> np.ndarray:
        return n * t * np.sqrt(np.maximum(1.0 - (s / n) ** 2, 0.0))

    opd = path(inst.n_coverslip, inst.coverslip_um) - path(
        inst.design_n_coverslip, inst.design_coverslip_um
    )
    z11 = zernike("spherical", rho, np.zeros_like(rho))
    w = 2.0 * rho  # area weight of the unit disc (∫ 2ρ dρ = 1)
    opd = opd - np.trapezoid(opd * w, rho)  # piston out
    return float(np.trapezoid(opd * z11 * w, rho) / o.wavelength_um)


class InstrumentBank(PSFBank):
    """A :class:`~.psf_bank.PSFBank` with exactly one, fixed aberration: the instrument's."""

    def __init__(
        self,
        inst: Instrument,
        defocus_max_um: float = 8.0,
        step_um: float = 0.25,
        size_px: int = 113,
    ) -> None:
        self.optics = inst.optics
        self.step_um = float(step_um)
        self.size_px = int(size_px)
        n_steps = int(np.ceil(defocus_max_um / step_um))
        self.defocus_grid_um = np.arange(-n_steps, n_steps + 1) * self.step_um
        zern = inst.total_zernike()
        best = best_focus_um(inst.optics, inst.depth_um, n_sample=inst.n_sample, zernike_waves=zern)
        self.aberrations = [
            Aberration(inst.depth_um, inst.n_sample, tuple(zern.items()), best)
        ]
        self.psfs = np.stack(
            [
                psf_2d(
                    inst.optics, best + dz, inst.depth_um, n_sample=inst.n_sample,
                    zernike_waves=zern, size_px=self.size_px,
                ).astype(np.float32)
                for dz in self.defocus_grid_um
            ]
        )[None]
        self.psfs.setflags(write=False)


#: Two instruments whose optics the packaged weights never saw (they were trained on random
#: aberrations of a 20×/0.75 dry objective, specimens 2–25 µm deep in n = 1.33–1.52, with
#: brightfield phase contrast in most fields):
#:
#: * ``dry_into_mount``: 40×/0.95 dry, an H&E section 8 µm deep under a mounting medium of
#:   n = 1.52 (no phase contrast: the mount matches the tissue's index), 0.25 µm pixels,
#:   small residual astigmatism and coma;
#: * ``oil_coverslip``: 40×/1.30 oil (n = 1.518), cells 6 µm deep in an aqueous medium
#:   (n = 1.36), on a 0.15 mm coverslip of n = 1.50 (a polymer-bottom dish) where the
#:   objective is corrected for 0.17 mm of n = 1.523; fluorescent spots and filaments,
#:   0.25 µm pixels (binned camera).
INSTRUMENTS: dict[str, Instrument] = {
    "dry_into_mount": Instrument(
        name="40x/0.95 dry, H&E section 8 um deep in a n=1.52 mount",
        optics=Optics(na=0.95, magnification=40.0, pixel_size_um=0.25, n_immersion=1.0,
                      n_sample=1.52, name="40x/0.95 dry"),
        depth_um=8.0,
        n_sample=1.52,
        zernike_waves=(("astig_vertical", 0.03), ("coma_horizontal", 0.02)),
        specimens=("he_tissue",),
        p_phase=0.0,
    ),
    "oil_coverslip": Instrument(
        name="40x/1.30 oil, aqueous n=1.36 at 6 um, 150 um coverslip of n=1.50",
        optics=Optics(na=1.30, magnification=40.0, pixel_size_um=0.25, n_immersion=1.518,
                      n_sample=1.36, name="40x/1.30 oil"),
        depth_um=6.0,
        n_sample=1.36,
        coverslip_um=150.0,
        n_coverslip=1.50,
        zernike_waves=(("astig_oblique", 0.02),),
        specimens=("fluo_spots", "fluo_filaments"),
    ),
}


@dataclass
class InstrumentStack:
    """A simulated focus stack with its truth.

    Attributes
    ----------
    stack
        Frames ``(N, H, W)`` uint8 with ``focus_um`` (µm of drive) and ``pixel_size_um``.
    best_focus_um
        The true best-focus drive position (µm, on the stack's focus axis).
    true_defocus_um
        ``focus_um − best_focus_um`` per frame.
    specimen
        The specimen kind of the field.
    """

    stack: FocalStack
    best_focus_um: float
    true_defocus_um: np.ndarray
    specimen: str
    meta: dict[str, Any] = field(default_factory=dict)


def instrument_stack(
    sim: DefocusSimulator,
    rng: np.random.Generator,
    *,
    n_frames: int = 41,
    half_range_um: float = 6.0,
    centre_jitter_um: float = 1.0,
    size_px: int = 448,
    origin_um: float | None = None,
    descending: bool = False,
) -> InstrumentStack:
    """One focus stack of a new field through the instrument of ``sim``.

    Parameters
    ----------
    sim
        A :class:`DefocusSimulator` over an :class:`InstrumentBank` (see
        :func:`instrument_simulator`).
    rng
        Random generator (field, specimen, noise, centre offset).
    n_frames, half_range_um
        Evenly spaced frames covering ``±half_range_um`` about the stack's centre.
    centre_jitter_um
        The centre lies uniformly within ``±centre_jitter_um`` of best focus.
    size_px
        Frame side in pixels.
    origin_um
        Drive reading at best focus (default: random in 0…100 µm).
    descending
        Acquire from the top (positions decreasing).

    Returns
    -------
    InstrumentStack
    """
    centre = float(rng.uniform(-centre_jitter_um, centre_jitter_um))
    dz = centre + np.linspace(-half_range_um, half_range_um, n_frames)
    if descending:
        dz = dz[::-1]
    lim = sim.bank.defocus_max_um
    if np.abs(dz).max() > lim:
        raise ValueError(f"defocus up to {np.abs(dz).max():.1f} µm exceeds the bank's ±{lim} µm.")
    frames, name, _ = sim.render_field(rng, dz, tile_px=size_px)
    origin = float(rng.uniform(0.0, 100.0)) if origin_um is None else float(origin_um)
    pos = np.round(origin + dz, 4)
    st = FocalStack(
        frames, focus_um=pos, pixel_size_um=sim.optics.pixel_size_um, source=f"sim:{name}"
    )
    return InstrumentStack(st, origin, (pos - origin).astype(np.float32), name)


def psf_size_for(optics: Optics, defocus_max_um: float) -> int:
    """Odd PSF side (px) that holds the geometric blur disc at ``defocus_max_um`` (at least
    113): radius ``|z| tan θ``, ``sin θ = NA / n_immersion``, plus a margin."""
    tan = math.tan(math.asin(min(optics.na / optics.n_immersion, 0.999)))
    side = int(math.ceil(2.2 * defocus_max_um * tan / optics.pixel_size_um)) + 9
    return max(113, side | 1)


def instrument_simulator(
    inst: Instrument | str,
    *,
    defocus_max_um: float = 7.0,
    psf_size_px: int | None = None,
    specimens: Sequence[str] | None = None,
) -> DefocusSimulator:
    """A :class:`DefocusSimulator` that sees every field through ``inst`` (a name of
    :data:`INSTRUMENTS` or an :class:`Instrument`); grey frames, no JPEG. The PSF side
    defaults to :func:`psf_size_for` (no blur disc is cut off within ``defocus_max_um``)."""
    if isinstance(inst, str):
        if inst not in INSTRUMENTS:
            raise ValueError(f"Unknown instrument '{inst}'; choose one of {', '.join(INSTRUMENTS)}.")
        inst = INSTRUMENTS[inst]
    if psf_size_px is None:
        psf_size_px = psf_size_for(inst.optics, defocus_max_um)
    bank = InstrumentBank(inst, defocus_max_um=defocus_max_um, size_px=psf_size_px)
    return DefocusSimulator(
        bank,
        tuple(specimens or inst.specimens),
        p_jpeg=0.0,
        p_partial=0.1,
        defocus_max_um=defocus_max_um,
        p_phase=inst.p_phase,
    )
