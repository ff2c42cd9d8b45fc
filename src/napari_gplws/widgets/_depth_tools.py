"""The result tools of the Depth from focus dock: exports and surface parameters.

:class:`DepthResultTools` is mixed into :class:`~.depth_widget.DepthFromFocusWidget`; it
works on the dock's last result (``self.result``, a :class:`._depth_results.RunResult`)
and its layers:

* **Depth TIFF…** — :func:`~napari_gplws.io.write_depth_tiff` (float32, units, pixel size);
* **Mesh…** — :func:`~napari_gplws.metrology.mesh.export_mesh` (PLY/STL/OBJ), z = height
  (up toward the objective, or inverted with the **Invert height** setting);
* **Surface parameters** — :func:`~napari_gplws.metrology.roughness.surface_parameters`
  of the height map (so a hole is a pit), over the whole map or a drawn rectangle, shown in
  the dock and written as CSV.

The file dialogs are the only Qt parts; everything else is one core call.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import QFileDialog

from napari_gplws.errors import GplwsError
from napari_gplws.widgets import _layers
from napari_gplws.widgets._controls import find_data, show_exception
from napari_gplws.widgets._depth_results import lateral_unit
from napari_gplws.widgets._height import height_setting

__all__ = ["DepthResultTools"]


class DepthResultTools:
    """Exports and surface parameters of the Depth from focus dock (see the module docstring)."""

    result: Any
    viewer: Any
    outputs: Any

    # ======================================================================================
    # Exports
    # ======================================================================================
    def _ask_path(self, title: str, default: str, filters: str) -> tuple[str, str]:
        path, chosen = QFileDialog.getSaveFileName(self, title, default, filters)
        return str(path or ""), str(chosen or "")

    def _export_depth_clicked(self) -> None:
        if self.result is None:
            return
        path, _ = self._ask_path(
            "Save depth map", f"{self.result.input_name}_depth.tif", "TIFF (*.tif *.tiff)"
        )
        if path:
            self.export_depth(path)

    def export_depth(self, path: str) -> Path | None:
        """Write the last depth map as a float32 TIFF with its units and pixel size."""
        from napari_gplws.io import write_depth_tiff

        res = self.result
        if res is None:
            return None
        if Path(path).suffix.lower() not in (".tif", ".tiff"):
            path = f"{path}.tif"
        rec = res.reconstruction
        try:
            out = write_depth_tiff(
                path, rec.depth, units=rec.units, pixel_size_um=res.pixel_size_um,
                metadata={
                    "method": rec.method, "device": rec.device, "source": res.input_name,
                    "focus_um": None if rec.stack.focus_um is None else list(rec.stack.focus_um),
                },
            )  # fmt: skip
        except GplwsError as exc:
            show_exception(exc)
            return None
        self.status_label.setText(f"Saved the depth map to {out}.")
        return out

    def _export_mesh_clicked(self) -> None:
        if self.result is None:
            return
        path, chosen = self._ask_path(
            "Save surface mesh", f"{self.result.input_name}_surface.ply",
            "PLY with colour (*.ply);;STL (*.stl);;OBJ with texture (*.obj)",
        )  # fmt: skip
        if path:
            if Path(path).suffix.lower() not in (".ply", ".stl", ".obj"):
                path += "." + (chosen.split("*.")[-1].rstrip(")") if "*." in chosen else "ply")
            self.export_mesh(path)

    def export_mesh(self, path: str) -> Path | None:
        """Write the last surface as PLY, STL or OBJ (by suffix), in µm where known, with
        z = height (up toward the objective, or inverted with **Invert height**)."""
        from napari_gplws.metrology.mesh import export_mesh

        if self.result is None:
            return None
        sign = 1.0 if height_setting().inverted else -1.0
        mesh = dataclasses.replace(self.result.mesh, height_sign=sign)
        try:
            out = export_mesh(path, mesh, self.result.texture)
        except GplwsError as exc:
            show_exception(exc)
            return None
        self.status_label.setText(f"Saved the mesh to {out}.")
        return out

    # --- surface parameters ----------------------------------------------------------------
    def add_region_layer(self) -> Any | None:
        """Add a Shapes layer with a movable rectangle over the centre of the depth map."""
        res = self.result
        if res is None:
            return None
        h, w = res.reconstruction.depth.shape
        rect = np.array([[h * 0.25, w * 0.25], [h * 0.75, w * 0.75]])
        lat = lateral_unit(res.pixel_size_um)
        layer = self.viewer.add_shapes(
            [rect], shape_type="rectangle", name=f"{res.input_name} region",
            edge_color="yellow", face_color=[1, 1, 0, 0.1], edge_width=max(1.0, w / 200),
            scale=res.scale_yx, translate=res.translate_yx, units=(lat, lat),
            axis_labels=("y", "x"),
        )  # fmt: skip
        layer.mode = "select"
        self.region_combo.setCurrentIndex(find_data(self.region_combo, layer))
        return layer

    def _measurements(self) -> list[Any]:
        """Surface parameters of the whole map, plus the chosen rectangle when there is one."""
        from skimage.draw import polygon2mask

        from napari_gplws.metrology.profile import height_from_depth
        from napari_gplws.metrology.roughness import surface_parameters

        res = self.result
        if res is None:
            return []
        rec = res.reconstruction
        common = {
            "spacing_yx": res.scale_yx, "units": rec.units,
            "lateral_units": "µm" if res.pixel_size_um else "px",
        }  # fmt: skip
        # Peaks and pits are those of the height (a hole is a pit), not of the depth.
        height = height_from_depth(rec.depth, inverted=height_setting().inverted)
        out = [surface_parameters(height, label="whole map", **common)]
        shapes = self.region_combo.currentData()
        if _layers.contains(self.viewer, shapes):
            idx = _layers.pick_shape(shapes, ("rectangle", "polygon"))
            if idx is None:
                raise GplwsError(
                    f"'{shapes.name}' holds no rectangle; draw one, or choose 'whole map'."
                )
            depth_layer = self.outputs.get(res.input_name, "depth")
            if depth_layer is None:
                raise GplwsError("The depth layer was removed; run again to measure a region.")
            verts = _layers.shape_vertices_in(shapes, idx, depth_layer)
            mask = polygon2mask(rec.depth.shape, verts)
            if not mask.any():
                raise GplwsError(f"The rectangle in '{shapes.name}' lies outside the depth map.")
            rows, cols = np.nonzero(mask)
            region = (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1)
            out.append(
                surface_parameters(
                    height,
                    region=region,
                    mask=mask,
                    label=f"rectangle in '{shapes.name}'",
                    **common,
                )
            )
        return out

    def measure(self) -> list[Any]:
        """Compute and show the surface parameters of the chosen region."""

        try:
            results = self._measurements()
        except GplwsError as exc:
            show_exception(exc)
            return []
        if results:
            r = results[-1]
            self.params_label.setText(f"{r.label}: {r.n_pixels} px, plane-levelled")
            for name, label in self.param_values.items():
                label.setText(f"{r.values[name]:.4g} {r.unit_of(name)}".rstrip())
        return results

    def _export_params_clicked(self) -> None:
        if self.result is None:
            return
        path, _ = self._ask_path(
            "Save surface parameters",
            f"{self.result.input_name}_surface_parameters.csv",
            "CSV (*.csv)",
        )
        if path:
            self.export_parameters(path)

    def export_parameters(self, path: str) -> Path | None:
        """Write the surface parameters (whole map, and the rectangle when chosen) as CSV."""
        from napari_gplws.metrology.profile import height_convention
        from napari_gplws.metrology.roughness import write_parameters_csv

        results = self.measure()
        if not results:
            return None
        if Path(path).suffix.lower() != ".csv":
            path = f"{path}.csv"
        try:
            out = write_parameters_csv(
                path, results, source=self.result.input_name,  # type: ignore[union-attr]
                surface=height_convention(height_setting().inverted),
            )  # fmt: skip
        except GplwsError as exc:
            show_exception(exc)
            return None
        self.status_label.setText(f"Saved the surface parameters to {out}.")
        return out

