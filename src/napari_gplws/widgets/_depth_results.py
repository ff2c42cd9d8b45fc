"""What a Depth from focus run hands to the dock: the result and its napari layer data.

Qt-free: :class:`RunResult` is built on the worker thread, and :func:`result_layers`
turns it into the layers the dock adds (depth, all-in-focus, confidence and the textured
surface), each sharing the input stack's world geometry: the same y/x scale and translate,
``units`` (µm where known, so napari's scale bar reads µm) and ``axis_labels``. The
surface's z axis is the stack's own (frame index × its z scale and translate), so the hidden
surface adds no step to the z slider and each point sits in the frame where it is in focus;
:func:`surface_data_vertices` does that conversion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    pass

#: Axis names of the plugin's layers.
AXIS_LABELS_YX = ("y", "x")
AXIS_LABELS_ZYX = ("z", "y", "x")


@dataclass
class RunResult:
    """What one run produced (kept for the export buttons)."""

    input_name: str
    reconstruction: Any
    mesh: Any
    texture: np.ndarray
    depth_range: tuple[float, float]
    scale_yx: tuple[float, float]
    translate_yx: tuple[float, float]
    pixel_size_um: float | None
    #: The stack layer's z axis: ``(scale, translate, unit)``.
    stack_z: tuple[float, float, str] = (1.0, 0.0, "pixel")
    layers: dict[str, Any] = field(default_factory=dict)
    pending_layers: dict[str, Any] = field(default_factory=dict)
    #: Add the aligned frames as a layer (when the run aligned them).
    show_aligned: bool = False


def lateral_unit(pixel_size_um: float | None) -> str:
    """napari's unit of the y/x axes: ``"µm"`` when the pixel size is known, else pixels."""
    return "µm" if pixel_size_um else "pixel"


def surface_data_vertices(res: RunResult) -> np.ndarray:
    """The mesh's vertices in the surface layer's data coordinates: ``z`` in frame index of
    the stack (the depth converted through the focus positions), ``y``/``x`` in pixels."""
    from napari_gplws.stack import position_to_index

    rec, v = res.reconstruction, np.asarray(res.mesh.vertices, np.float64)
    focus = rec.stack.focus_um
    z = v[:, 0] if focus is None or rec.units != "µm" else position_to_index(v[:, 0], focus)
    (sy, sx), (ty, tx) = res.scale_yx, res.translate_yx
    return np.column_stack([z, (v[:, 1] - ty) / sy, (v[:, 2] - tx) / sx]).astype(np.float32)


def result_layers(res: RunResult) -> dict[str, Any]:
    """The four output layers of a run (not yet in a viewer).

    Built in the worker thread: constructing napari layers of 1024² maps (contrast ranges,
    thumbnails, the textured mesh) costs a few hundred ms, which on the GUI thread is a
    visible freeze. Layer models hold no Qt objects until they are added to a viewer.
    """
    from napari.layers import Image, Surface

    rec = res.reconstruction
    name = res.input_name
    meta = {
        "units": rec.units,
        "method": rec.method,
        "device": rec.device,
        "pixel_size_um": res.pixel_size_um,
        "focus_um": None
        if rec.stack.focus_um is None
        else [float(v) for v in rec.stack.focus_um],
        "source": name,
        "seconds": round(float(rec.timings.get("total", 0.0)), 3),
        "alignment": None if rec.alignment is None else rec.alignment.to_report(),
        "fusion": rec.parameters.get("fusion", "select"),
    }
    lat = lateral_unit(res.pixel_size_um)
    geo = {
        "scale": res.scale_yx, "translate": res.translate_yx, "units": (lat, lat),
        "axis_labels": AXIS_LABELS_YX,
    }  # fmt: skip
    lo, hi = res.depth_range
    depth = Image(
        rec.depth, name=f"{name} depth", colormap="viridis",
        contrast_limits=(lo, hi if hi > lo else lo + 1.0), metadata={**meta, "kind": "depth"}, **geo,
    )  # fmt: skip
    aif = Image(
        rec.aif, name=f"{name} all-in-focus", rgb=rec.aif.ndim == 3,
        metadata={**meta, "kind": "all-in-focus"}, **geo,
    )  # fmt: skip
    conf = Image(
        rec.confidence, name=f"{name} confidence", colormap="gray", contrast_limits=(0.0, 1.0),
        visible=False, metadata={**meta, "units": "", "kind": "confidence"}, **geo,
    )  # fmt: skip
    mesh = res.mesh
    z_scale, z_translate, z_unit = res.stack_z
    surface = Surface(
        (surface_data_vertices(res), mesh.faces, np.ones(len(mesh.vertices), np.float32)),
        name=f"{name} surface", texture=res.texture, texcoords=mesh.texcoords,
        colormap="gray", contrast_limits=(0.0, 1.0), shading="smooth", visible=False,
        scale=(z_scale, *res.scale_yx), translate=(z_translate, *res.translate_yx),
        units=(z_unit, lat, lat), axis_labels=AXIS_LABELS_ZYX,
        metadata={
            **meta, "kind": "surface", "z_units": mesh.z_units,
            "lateral_units": mesh.lateral_units, "grid_step_px": mesh.step,
            "true_aspect": mesh.true_aspect,
        },
    )  # fmt: skip
    out = {"aif": aif, "confidence": conf, "depth": depth, "surface": surface}
    if res.show_aligned and rec.aligned_stack is not None:
        frames = rec.aligned_stack.frames
        aligned = Image(
            frames, name=f"{name} aligned", rgb=frames.ndim == 4,
            scale=(z_scale, *res.scale_yx), translate=(z_translate, *res.translate_yx),
            units=(z_unit, lat, lat), axis_labels=AXIS_LABELS_ZYX, visible=False,
            metadata={**meta, "units": "", "kind": "aligned stack"},
        )  # fmt: skip  (hidden: it must not cover the new depth map, wherever it lands)
        out = {"aligned": aligned, **out}  # below the results in the layer list
    return out


def alignment_summary(rec: Any) -> str:
    """One plain sentence on what frame alignment did (empty when it was off)."""
    al = rec.alignment
    if al is None:
        return ""
    if al.aligned:
        res = al.max_residual_px
        left = (
            "" if res is None or not np.isfinite(res)
            else f"; neighbouring frames now agree within {res:.2f} px"
        )
        if al.evidence is not None and len(al.evidence.gains) and not al.evidence.moving:
            return (
                f" Frames aligned to frame {al.reference} (alignment on), although they do not "
                "seem to move: the shifts measured may come from the changing blur."
            )
        return f" Frames aligned to frame {al.reference}: they moved up to {al.max_motion_px:.1f} px{left}."
    if al.evidence is not None and len(al.evidence.gains) and not al.evidence.moving:
        return " Frames used as they are: they do not move."
    why = al.reason.removeprefix("not aligned: ").split(" (")[0]
    return f" Frames not aligned: {why}."
