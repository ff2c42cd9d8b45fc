"""The result tools of the Focal error map dock: its summary table and exports.

:class:`FocalResultTools` is mixed into :class:`~.focal_error_widget.FocalErrorMapWidget`;
it works on the dock's last result (``self.result``, a
:class:`._focal_error_view.FocalMapResult`): the per-frame table and the overall line
(:func:`._focal_error_view.summary_texts`), which controls a result enables, and the exports
of the per-region table as CSV or JSON
(:meth:`~napari_gplws.defocus.AutofocusResult.to_csv`, ``to_json``), an existing file
being first kept as a backup (:func:`~napari_gplws._shared.files.move_aside`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QFileDialog, QTableWidgetItem

from napari_gplws.errors import GplwsError
from napari_gplws.widgets import _focal_error_view as view
from napari_gplws.widgets._controls import show_exception

__all__ = ["FocalResultTools"]


class FocalResultTools:
    """Summary table and exports of the Focal error map dock (see the module docstring)."""

    result: Any
    summary_table: Any
    overall_label: Any
    status_label: Any
    show_combo: Any
    show_row: Any
    export_csv_button: Any
    export_json_button: Any

    def _fill_summary(self, res: view.FocalMapResult) -> None:
        overall, status, rows = view.summary_texts(res)
        table = self.summary_table
        table.setRowCount(0)
        table.setVisible(res.analysis != view.ANALYSIS_RMSE)
        for cells in rows:
            r = table.rowCount()
            table.insertRow(r)
            for c, text in enumerate(cells):
                table.setItem(r, c, QTableWidgetItem(text))
        self.overall_label.setText(overall)
        self.status_label.setText(status)


    def _set_result_actions(self) -> None:
        res = self.result
        defocus = res is not None and res.analysis == view.ANALYSIS_DEFOCUS
        for w in (self.export_csv_button, self.export_json_button):
            w.setEnabled(defocus)
        model = self.show_combo.model()
        for i in range(self.show_combo.count()):
            key = self.show_combo.itemData(i)
            model.item(i).setEnabled(defocus and key in res.grids)  # type: ignore[union-attr]
        if defocus and self.show_combo.currentData() not in res.grids:  # type: ignore[union-attr]
            self.show_combo.setCurrentIndex(self.show_combo.findData("predicted"))
        self.show_combo.setEnabled(defocus)
        self.show_row.setVisible(res is None or defocus)


    # --- Exports -------------------------------------------------------------------------
    def _ask_path(self, title: str, default: str, filters: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self, title, default, filters)
        return str(path or "")

    def _export_clicked(self, suffix: str) -> None:
        res = self.result
        if res is not None and res.autofocus is not None:
            title = "Save the region table" if suffix == ".csv" else "Save the result"
            filters = "CSV (*.csv)" if suffix == ".csv" else "JSON (*.json)"
            path = self._ask_path(title, f"{res.input_name}_focal_error{suffix}", filters)
            if path:
                self._export(path, suffix)

    def export_csv(self, path: str) -> Path | None:
        """Write the per-region table (one row per frame and region) as CSV."""
        return self._export(path, ".csv")

    def export_json(self, path: str) -> Path | None:
        """Write the whole result (grids, settings, summary) as JSON."""
        return self._export(path, ".json")

    def _export(self, path: str, suffix: str) -> Path | None:
        from napari_gplws._shared.files import move_aside

        res = self.result
        if res is None or res.autofocus is None:
            return None
        if Path(path).suffix.lower() != suffix:
            path = f"{path}{suffix}"
        try:
            backup = move_aside(path)
            write = res.autofocus.to_csv if suffix == ".csv" else res.autofocus.to_json
            out = write(path)
        except GplwsError as exc:
            show_exception(exc)
            return None
        except OSError as exc:
            show_exception(GplwsError(f"Cannot write '{path}': {exc}."))
            return None
        kept = f" (the earlier file was kept as {backup.name})" if backup else ""
        self.status_label.setText(f"Saved {out}{kept}.")
        return out
