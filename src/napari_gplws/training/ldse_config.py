"""Options of an LDSE-NET training run (:class:`LDSETrainConfig`) and the optics presets.

The command line (``gplws train ldse``) builds a :class:`LDSETrainConfig` from its
arguments; the trainer (:mod:`.ldse`) and the model card (:mod:`.ldse_card`) read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from napari_gplws.sim.psf import PRESETS, Optics
from napari_gplws.sim.specimens import PHASE_RAD
from napari_gplws.training._common import ConfigMixin

__all__ = ["VAL_SEED", "LDSETrainConfig", "optics_preset"]

#: Seed of the validation fields (training draws from the run's own seed).
VAL_SEED = 1_000_003


@dataclass
class LDSETrainConfig(ConfigMixin):
    """Options of an LDSE-NET training run (all have command-line equivalents)."""

    out_dir: str = "runs/ldse"
    steps: int = 1_000_000
    max_minutes: float | None = None
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.02
    seed: int = 0
    optics: str = "20x"
    n_aberrations: int = 8
    psf_step_um: float = 0.25
    psf_size_px: int = 113
    crop_px: int = 128
    full_px: int = 224
    full_fraction: float = 0.2
    fresh_fraction: float = 0.5
    buffer_size: int = 3072
    per_field: int = 6
    ema_decay: float = 0.998
    aux_abs_weight: float = 1.0
    aux_sign_weight: float = 0.5
    signed_weight: float = 1.0
    phase_rad: tuple[float, float] = PHASE_RAD
    p_phase: float = 0.8
    p_near: float = 0.6
    sign_stage_fraction: float = 0.0
    sign_stage_phase_rad: tuple[float, float] = (0.8, 1.5)
    init_weights: str | None = None
    ckpt_minutes: float = 4.0
    val_minutes: float = 8.0
    resume: bool = False
    device: str = "cpu"
    threads: int = 0
    n_val_fields: int = 48
    n_test_fields: int = 80
    n_test_aberrations: int = 4
    n_calib_fields: int = 64
    test_per_field: int = 8
    jiang: str | None = None
    stacks: tuple[str, ...] = ()
    stack_focus_step_um: float | None = None
    real_fraction: float = 0.5
    weights_out: str | None = None
    command: str = ""
    log_every: int = 25
    config: dict[str, Any] = field(default_factory=dict)


def optics_preset(name: str) -> Optics:
    """The optics preset called ``name`` (see :data:`napari_gplws.sim.psf.PRESETS`).

    Raises
    ------
    ValueError
        No preset has that name.
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown optics preset '{name}'; choose one of {', '.join(PRESETS)}.")
    return PRESETS[name]
