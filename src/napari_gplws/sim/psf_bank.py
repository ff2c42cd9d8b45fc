"""Aberrations and banks of precomputed defocused PSFs for the defocus-tile simulator.

A :class:`PSFBank` holds the 2-D PSFs of one optics and one aberration over a grid of
defocus values (computed once with :func:`napari_gplws.sim.psf.psf_2d` and cached), so
that rendering a tile is one convolution.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_gplws.sim.psf import OPTICS_20X, ZERNIKE_NAMES, Optics, best_focus_um, psf_2d


# ------------------------------------------------------------------------------------------
# Aberrations and the PSF bank
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Aberration:
    """One aberration configuration: specimen depth, sample index and Zernike terms.

    ``best_focus_um`` is the drive position of best focus (µm, see :mod:`napari_gplws.sim.psf`).
    """

    depth_um: float
    n_sample: float
    zernike_waves: tuple[tuple[str, float], ...]
    best_focus_um: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "depth_um": self.depth_um,
            "n_sample": self.n_sample,
            "zernike_waves": dict(self.zernike_waves),
            "best_focus_um": self.best_focus_um,
        }


def random_aberration(
    rng: np.random.Generator,
    optics: Optics,
    depth_range_um: tuple[float, float] = (2.0, 25.0),
    n_sample_range: tuple[float, float] = (1.33, 1.52),
    zernike_rms_waves: float = 0.04,
) -> Aberration:
    """Draw a random aberration configuration and find its best focus.

    The specimen depth and sample index are uniform in their ranges; every Zernike term of
    :data:`napari_gplws.sim.psf.ZERNIKE_NAMES` gets a coefficient ``N(0, zernike_rms_waves)`` waves rms.
    """
    depth = float(rng.uniform(*depth_range_um))
    ns = float(rng.uniform(*n_sample_range))
    zern = tuple((name, float(rng.normal(0.0, zernike_rms_waves))) for name in ZERNIKE_NAMES)
    best = best_focus_um(optics, depth, n_sample=ns, zernike_waves=dict(zern))
    return Aberration(depth, ns, zern, best)


class PSFBank:
    """PSFs of several aberration configurations on a regular defocus grid.

    Parameters
    ----------
    optics
        Microscope optics.
    n_configs
        Number of random aberration configurations.
    seed
        Seed of the configurations (use different seeds for training and test banks).
    defocus_max_um
        The grid covers ``[-defocus_max_um, +defocus_max_um]`` µm of drive travel about
        each configuration's best focus.
    step_um
        Grid step in µm; PSFs in between are linearly interpolated.
    size_px
        Side of each PSF (odd), pixels.
    progress
        Optional ``progress(done, total)``.
    """

    def __init__(
        self,
        optics: Optics = OPTICS_20X,
        n_configs: int = 8,
        seed: int = 0,
        defocus_max_um: float = 10.5,
        step_um: float = 0.25,
        size_px: int = 113,
        progress: Callable[[int, int], None] | None = None,
        **aberration_options: Any,
    ) -> None:
        self.optics = optics
        self.step_um = float(step_um)
        self.size_px = int(size_px)
        n_steps = int(np.ceil(defocus_max_um / step_um))
        self.defocus_grid_um = np.arange(-n_steps, n_steps + 1) * self.step_um
        rng = np.random.default_rng([seed, 7919])
        self.aberrations = [
            random_aberration(rng, optics, **aberration_options) for _ in range(n_configs)
        ]
        total = n_configs * len(self.defocus_grid_um)
        self.psfs = np.empty((n_configs, len(self.defocus_grid_um), size_px, size_px), np.float32)
        done = 0
        for i, ab in enumerate(self.aberrations):
            zern = dict(ab.zernike_waves)
            for j, dz in enumerate(self.defocus_grid_um):
                self.psfs[i, j] = psf_2d(
                    optics,
                    ab.best_focus_um + dz,
                    ab.depth_um,
                    n_sample=ab.n_sample,
                    zernike_waves=zern,
                    size_px=size_px,
                )
                done += 1
                if progress is not None:
                    progress(done, total)
        self.psfs.setflags(write=False)

    @property
    def n_configs(self) -> int:
        return len(self.aberrations)

    @property
    def defocus_max_um(self) -> float:
        return float(self.defocus_grid_um[-1])

    def psf(self, config: int, defocus_um: float) -> np.ndarray:
        """PSF (sum 1, float32) of configuration ``config`` at ``defocus_um`` (interpolated)."""
        x = (float(defocus_um) - self.defocus_grid_um[0]) / self.step_um
        if not (0.0 <= x <= len(self.defocus_grid_um) - 1):
            raise ValueError(
                f"defocus {defocus_um} µm is outside the bank's ±{self.defocus_max_um} µm."
            )
        j = min(int(np.floor(x)), len(self.defocus_grid_um) - 2)
        t = np.float32(x - j)
        return (1 - t) * self.psfs[config, j] + t * self.psfs[config, j + 1]


_BANK_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def _cached_bank(
    optics: Optics, n_configs: int, seed: int, defocus_max_um: float, step_um: float, size_px: int
) -> PSFBank:
    return PSFBank(optics, n_configs, seed, defocus_max_um, step_um, size_px)


def psf_bank(
    optics: Optics = OPTICS_20X,
    n_configs: int = 8,
    seed: int = 0,
    defocus_max_um: float = 10.5,
    step_um: float = 0.25,
    size_px: int = 113,
) -> PSFBank:
    """A :class:`PSFBank`, built once per set of arguments and kept in memory."""
    with _BANK_LOCK:
        return _cached_bank(
            optics, n_configs, seed, float(defocus_max_um), float(step_um), int(size_px)
        )
