"""The model card of calibrated LDSE-NET weights (:func:`calibration_card`).

A calibration card says what the weights were calibrated on (the stacks, their focus range
and step, their pixel size, the optics the user named), how (the options, the command, the
wall and CPU time) and how well on the user's held-out fields, before and after, in the
three figures of :func:`napari_gplws.training.calibrate.held_out_metrics`. It is rendered
as Markdown by :func:`napari_gplws.models.cards.calibration_card_markdown`, and its
``summary_line`` is what the CLI and the dock print about the weights.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_gplws.models.cards import weights_summary_line

if TYPE_CHECKING:
    from napari_gplws.training.calibrate import CalibrationConfig, CalibrationData

__all__ = ["CALIBRATION_KIND", "calibration_card"]

#: ``kind`` entry of a calibration card.
CALIBRATION_KIND = "ldse-calibration"


def calibration_card(
    *,
    data: CalibrationData,
    cfg: CalibrationConfig,
    base: str,
    base_card: dict[str, Any],
    before: dict[str, Any],
    after: dict[str, Any],
    history: list[dict[str, Any]],
    steps: int,
    wall_min: float,
    cpu_min: float,
    optics_note: str | None,
    command: str,
    output: Path,
    config: dict[str, Any],
    improved: bool,
) -> dict[str, Any]:
    """The card's content (JSON-ready); see the module notes for what it holds."""
    n_stacks = len(data.stacks)
    n_held = sum(1 for s in data.stacks if s.get("held_out"))
    optics: dict[str, Any] = {"name": optics_note or "not given"}
    if data.pixel_size_um is not None:
        # autofocus() resamples frames of another pixel size to this one.
        optics["pixel_size_um"] = float(data.pixel_size_um)
    steps_um = sorted({s["focus_step_um"] for s in data.stacks})
    card: dict[str, Any] = {
        "name": f"LDSE-NET calibrated: {output.stem}",
        "kind": CALIBRATION_KIND,
        "summary": (
            "Signed defocus (µm of focus-drive travel) of one 224×224 tile, calibrated to one "
            f"microscope from {n_stacks} of its own focus stacks."
        ),
        "base_weights": base,
        "base_name": base_card.get("name", base),
        "sign_convention": base_card.get(
            "sign_convention", "defocus = frame position − best-focus position (µm)"
        ),
        "optics": optics,
        "data": (
            f"{len(data.tiles)} tiles of {cfg.tile_px}×{cfg.tile_px} px from {n_stacks} focus "
            f"stacks (focus step {', '.join(f'{s:g}' for s in steps_um)} µm), labelled "
            "from each tile position's own focus curve; flips and quarter turns only."
        ),
        "stacks": data.stacks,
        "held_out": {
            "split": data.split,
            "stacks": n_held,
            "tiles": int(len(data.val_idx)),
            "tiles_scored": int(before.get("n_ge1", 0)),
            "before": before,
            "after": after,
        },
        "improved": bool(improved),
        "history": history,
        "command": command,
        "seed": cfg.seed,
        "steps": steps,
        "wall_time_min": round(wall_min, 2),
        "cpu_time_min": round(cpu_min, 2),
        "device": f"cpu ({platform.machine()})",
        "config": config,
        "calibration": cfg.to_dict(),
    }
    card["summary_line"] = weights_summary_line(card, output.stem)
    return card
