"""Shared fixtures. Core tests need no display; GUI tests (marked ``gui``) need Xvfb."""

from __future__ import annotations

import os

import pytest

# Keep torch and BLAS from oversubscribing the small CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def small_synthetic():
    """A 12-frame 96×96 synthetic stack with ground truth (waves, µm)."""
    from napari_gplws.sim.focus_stacks import synthetic_stack

    return synthetic_stack(family="waves", n_frames=12, shape=(96, 96), depth_range_um=(0.0, 22.0), seed=7)
