"""Layer bookkeeping shared by the dock widgets: finding inputs, reading their units, replacing outputs.

Everything here runs on the GUI thread and only reads or writes napari layers through their
public API; the maths is in :mod:`napari_gplws.core`. Helpers:

* :func:`stack_layers`, :func:`depth_layers`, :func:`shapes_layers` — candidate inputs;
* :func:`focus_from_layer`, :func:`pixel_size_from_layer`, :func:`yx_geometry`,
  :func:`z_geometry`, :func:`depth_units` — the physical units a layer carries (metadata
  written by the plugin's reader and sample, else its scale); :func:`set_pixel_size` gives a
  layer a pixel size (scale, ``units``, metadata) and :func:`units_yx` names the unit
  napari's scale bar reads;
* :func:`stack_frames` — the ``(N, H, W[, 3])`` array of a stack layer (leading axes such as
  time taken at the viewer's current position);
* :class:`OwnLayers` — the layers one widget made for one input, replaced on re-run without
  touching any other layer;
* :func:`shape_vertices_in` — a drawn shape's vertices in another layer's pixel coordinates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import napari
    import napari.layers

#: Milliseconds between two staged layer inserts (see :meth:`OwnLayers.replace`).
STEP_PAUSE_MS = 25

#: Metadata key marking layers made by this plugin's widgets (value: the widget's name).
MADE_BY = "gplws_widget"


def same(a: Any, b: Any) -> bool:
    """Whether two references name the same layer.

    napari hands plugin widgets a public-only proxy of the viewer, whose layers come back
    wrapped, so layers are compared by ``unique_id`` rather than by ``is``.
    """
    if a is b:
        return True
    ka, kb = getattr(a, "unique_id", None), getattr(b, "unique_id", None)
    return ka is not None and ka == kb


def contains(viewer: napari.viewer.Viewer, layer: Any) -> bool:
    """Whether ``layer`` is (still) in the viewer."""
    return layer is not None and any(same(ly, layer) for ly in viewer.layers)


def index_of(viewer: napari.viewer.Viewer, layer: Any) -> int:
    for i, ly in enumerate(viewer.layers):
        if same(ly, layer):
            return i
    return -1


def _is_image(layer: Any) -> bool:
    from napari.layers import Image

    return isinstance(layer, Image)


def stack_layers(viewer: napari.viewer.Viewer) -> list[napari.layers.Image]:
    """Image layers with a stack axis: at least three non-colour dimensions."""
    return [ly for ly in viewer.layers if _is_image(ly) and ly.ndim >= 3]


def depth_layers(viewer: napari.viewer.Viewer) -> list[napari.layers.Image]:
    """2-D single-channel Image layers, the ones marked as depth maps first (newest first)."""
    cands = [ly for ly in viewer.layers if _is_image(ly) and ly.ndim == 2 and not ly.rgb]
    marked = [ly for ly in cands if ly.metadata.get("kind") == "depth"]
    return marked[::-1] + [ly for ly in cands if ly not in marked]


def shapes_layers(viewer: napari.viewer.Viewer) -> list[napari.layers.Shapes]:
    from napari.layers import Shapes

    return [ly for ly in viewer.layers if isinstance(ly, Shapes)]


def focus_from_layer(layer: napari.layers.Image) -> np.ndarray | None:
    """Focus positions (µm) stored in the layer's metadata by the reader/sample, else ``None``."""
    focus = layer.metadata.get("focus_um")
    if focus is None:
        return None
    arr = np.asarray(focus, dtype=np.float64).ravel()
    n = layer.data.shape[layer.ndim - 3]
    return arr if arr.size == n and np.isfinite(arr).all() else None


def scale_focus_from_layer(layer: napari.layers.Image) -> tuple[float, float] | None:
    """``(start, step)`` in µm from the stack axis's translate and scale, when they look physical.

    A scale of exactly 1 with no unit in the metadata is napari's default and is read as
    "unknown" (``None``).
    """
    ax = layer.ndim - 3
    step = float(layer.scale[ax])
    start = float(layer.translate[ax])
    if step == 1.0 and layer.metadata.get("units") != "µm":
        return None
    return start, step


def pixel_size_from_layer(layer: napari.layers.Layer) -> float | None:
    """Lateral pixel size in µm: the metadata's ``pixel_size_um``, else the x scale unless it is 1."""
    px = layer.metadata.get("pixel_size_um")
    if px:
        return float(px)
    sx = float(layer.scale[-1])
    return None if sx == 1.0 else sx


#: Units of depth values a depth map can carry in ``metadata["units"]``.
DEPTH_UNITS = ("µm", "um", "nm", "mm", "frame")


def depth_units(layer: Any) -> str | None:
    """The unit of a depth map's values (``metadata["units"]``), or ``None`` when the layer
    does not say it holds depth (an image of grey levels, a confidence map…)."""
    units = str(layer.metadata.get("units") or "")
    return units if units in DEPTH_UNITS else None


def units_yx(pixel_size_um: float | None) -> tuple[str, str]:
    """napari ``units`` of the y/x axes: µm when the pixel size is known, else pixels."""
    return ("µm", "µm") if pixel_size_um else ("pixel", "pixel")


def set_pixel_size(layer: Any, px: float) -> None:
    """Give a layer the lateral pixel size ``px`` µm: y/x scale, ``units`` and metadata."""
    scale = list(layer.scale)
    scale[-2:] = [px, px]
    layer.scale = scale
    units = [str(u) for u in layer.units]
    units[-2:] = ["µm", "µm"]
    layer.units = units
    layer.metadata["pixel_size_um"] = float(px)


def z_geometry(layer: napari.layers.Layer) -> tuple[float, float, str]:
    """``(scale, translate, unit)`` of a stack layer's stack axis (the third from last)."""
    ax = layer.ndim - 3
    unit = str(layer.units[ax]) if getattr(layer, "units", None) is not None else "pixel"
    return float(layer.scale[ax]), float(layer.translate[ax]), short_unit(unit)


def short_unit(unit: str) -> str:
    """napari spells µm ``micrometer``; the plugin writes ``µm``."""
    return {"micrometer": "µm", "pixel": "pixel"}.get(unit, unit)


def yx_geometry(layer: napari.layers.Layer) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(scale_yx, translate_yx)`` of a layer's last two axes."""
    return (
        (float(layer.scale[-2]), float(layer.scale[-1])),
        (float(layer.translate[-2]), float(layer.translate[-1])),
    )


def stack_frames(layer: napari.layers.Image, viewer: napari.viewer.Viewer) -> Any:
    """The layer's ``(N, H, W[, 3])`` data; axes before the stack axis are taken at the viewer's
    current position (e.g. the time point on the slider). The array is not copied or loaded."""
    data = layer.data
    lead = layer.ndim - 3
    if lead <= 0:
        return data
    point = np.asarray(layer.world_to_data(viewer.dims.point), dtype=np.float64)
    index = []
    for ax in range(lead):
        index.append(int(np.clip(np.rint(point[ax]), 0, data.shape[ax] - 1)))
    return data[tuple(index)]


def shape_vertices_in(
    shapes: napari.layers.Shapes, index: int, target: napari.layers.Layer
) -> np.ndarray:
    """Vertices of shape ``index`` of a Shapes layer in ``target``'s data coordinates (last two axes)."""
    verts = np.asarray(shapes.data[index], dtype=np.float64)
    out = []
    for v in verts:
        world = shapes.data_to_world(v)
        out.append(np.asarray(target.world_to_data(world), dtype=np.float64)[-2:])
    return np.asarray(out)


def pick_shape(shapes: napari.layers.Shapes, types: Iterable[str]) -> int | None:
    """Index of the selected shape of one of ``types`` (the newest such shape when none is selected)."""
    types = tuple(types)
    kinds = list(shapes.shape_type)
    selected = sorted(i for i in shapes.selected_data if kinds[i] in types)
    if selected:
        return selected[-1]
    for i in range(len(kinds) - 1, -1, -1):
        if kinds[i] in types:
            return i
    return None


class OwnLayers:
    """The output layers one widget made, per input name, replaced as a whole on re-run.

    Layers are tracked by identity, not by name: a layer the user made (or renamed to the same
    name) is never removed, and a layer the user deleted is simply not there to replace.
    """

    def __init__(self, viewer: napari.viewer.Viewer, widget_name: str) -> None:
        self.viewer = viewer
        self.widget_name = widget_name
        self._by_input: dict[str, dict[str, Any]] = {}

    def get(self, input_name: str, role: str) -> Any | None:
        """The layer with ``role`` made for ``input_name``, if it is still in the viewer."""
        layer = self._by_input.get(input_name, {}).get(role)
        return layer if contains(self.viewer, layer) else None

    def replace(
        self,
        input_name: str,
        new_layers: dict[str, Any],
        then: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Remove this widget's previous layers for ``input_name`` and add ``new_layers``.

        ``new_layers`` maps a role to a layer object (not yet in the viewer). Each new layer is
        inserted where its predecessor was, or appended. The old layers go in one batch (napari
        then rebuilds its scene graph and garbage-collects once, not once per layer); the new
        ones are inserted one per turn of the Qt event loop, so the GUI stays responsive while
        napari builds their visuals (each insert costs a few hundred ms on a slow machine).
        ``then(added_layers_by_role)`` is called after the last insert.
        """
        old = self._by_input.get(input_name, {})
        positions: dict[str, int] = {}
        for role, layer in old.items():
            i = index_of(self.viewer, layer)
            if i >= 0:
                positions[role] = i
        if positions:
            with self.viewer.layers.batched_update():
                for role in sorted(positions, key=positions.get, reverse=True):  # type: ignore[arg-type]
                    del self.viewer.layers[positions[role]]
        for layer in new_layers.values():
            layer.metadata[MADE_BY] = self.widget_name
        self._by_input[input_name] = dict(new_layers)
        # Ascending old positions first, so each insert lands where its predecessor was.
        order = sorted((r for r in new_layers if r in positions), key=positions.get)  # type: ignore[arg-type]
        order += [r for r in new_layers if r not in positions]
        steps: list[Callable[[], None]] = []
        for role in order:
            layer = new_layers[role]
            if role in positions:
                steps.append(
                    lambda ly=layer, i=positions[role]: self.viewer.layers.insert(
                        min(i, len(self.viewer.layers)), ly
                    )
                )
            else:
                steps.append(lambda ly=layer: self.viewer.layers.append(ly))
        self._run_steps(steps, lambda: then(dict(new_layers)) if then is not None else None)

    @staticmethod
    def _run_steps(steps: list[Callable[[], None]], last: Callable[[], None]) -> None:
        from qtpy.QtCore import QTimer

        def next_step() -> None:
            if steps:
                steps.pop(0)()
                # A short pause lets Qt paint and handle input between two inserts.
                QTimer.singleShot(STEP_PAUSE_MS, next_step)
            else:
                last()

        next_step()
