"""The guidance part of the Ground truth editor dock: focus peak, prediction, suspects.

:class:`GuidanceTools` is mixed into :class:`~.gt_editor.GroundTruthEditorWidget`.
**Compute focus peak + prediction** runs the session's focus curves (and a model's
prediction, when one is chosen) in a worker :class:`._worker.Job` with a progress bar and
**Cancel**; the result becomes two hidden layers and a line saying how much of the sample is
suspect and how much cannot be judged (too little texture). **Next suspect** selects the
suspect region most worth a look (size × disagreement × focus-curve confidence,
:mod:`napari_gplws.annotate.guidance`) and centres the view on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import napari_gplws.annotate as an
from napari_gplws.widgets._worker import Job

__all__ = ["GuidanceTools"]


def _show_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


class GuidanceTools:
    """Guidance of the Ground truth editor (see the module docstring)."""

    viewer: Any
    session: Any
    dataset: Any
    name: Any
    layers: dict[str, Any]
    job: Any

    # --- guidance ----------------------------------------------------------------------
    def compute_guidance(self) -> None:
        """Compute focus curves (and the model prediction, if chosen) in a worker thread."""
        if self.session is None or (self.job is not None and self.job.running):
            return
        session, method = self.session, self.model_combo.currentData()

        def task(progress: Any, cancel: Any) -> an.EditSession:
            # Two stages on one bar: the focus curves, then the model's prediction.
            stages = 2 if method else 1

            def stage(k: int) -> Callable[[int, int], None]:
                return lambda done, total: progress(k * total + done, stages * total)

            session.compute_focus_curves(progress=stage(0), cancel=cancel)
            if method:
                session.compute_prediction(method=method, progress=stage(1), cancel=cancel)
            return session

        self.job = Job(
            task,
            description="Focus curves",
            activity=False,
            on_done=self._guidance_done,
            on_error=self._guidance_error,
            on_cancelled=self._guidance_cancelled,
            on_finished=self._guidance_finished,
            parent=self,
        )
        self.job.progressed.connect(self._guidance_progress)
        self.guidance_progress.setRange(0, 1)
        self.guidance_progress.setValue(0)
        self.guidance_progress.setVisible(True)
        self.info_label.setText("Computing the focus curves" + (" and the prediction…" if method else "…"))
        self.job.start()
        self._update_enabled()

    def cancel_guidance(self) -> None:
        """Stop the focus curves / prediction at their next step; nothing is added."""
        if self.job is not None and self.job.running:
            self.job.cancel()
            self.info_label.setText("Cancelling…")

    def _guidance_progress(self, done: int, total: int) -> None:
        if total > 0:
            self.guidance_progress.setRange(0, total)
            self.guidance_progress.setValue(done)

    def _guidance_cancelled(self) -> None:
        self.info_label.setText("Cancelled; no guidance was added.")
        self.guidance_done.emit("cancelled")

    def _guidance_finished(self) -> None:
        self.guidance_progress.setVisible(False)
        self._update_enabled()

    def _on_closed(self) -> None:
        """Closing the dock stops a running job (nothing is added afterwards)."""
        if self.job is not None and self.job.running:
            self.job.cancel()

    def _guidance_done(self, session: an.EditSession) -> None:
        if session is not self.session:
            self.guidance_done.emit("cancelled")
            return
        from napari_gplws.annotate.guidance import suspicion

        name = self.name
        yx = self._geometry(session)["yx"]
        self._show(
            "peak", session.peak_um, f"{name} focus peak (µm)", self.viewer.add_image,
            colormap="viridis", visible=False, metadata={"units": "µm", "kind": "depth"}, **yx,
        )  # fmt: skip
        if session.prediction_um is not None:
            self._show(
                "prediction", session.prediction_um, f"{name} prediction (µm)",
                self.viewer.add_image, colormap="viridis", visible=False,
                metadata={"units": "µm", "kind": "depth"}, **yx,
            )  # fmt: skip
        guide = suspicion(
            session.depth, (session.peak_um, session.prediction_um), session.curves,
            self.threshold.value(),
        )  # fmt: skip
        self.dataset.set_suspect_fraction(name, guide.suspect_fraction)
        self.info_label.setText(
            f"{guide.suspect_fraction:.1%} of the pixels are suspect (a clear focus peak "
            f"disagrees by more than {self.threshold.value():g} µm); "
            f"{guide.unknown_fraction:.1%} are unknown (too little texture to judge)."
        )
        self.viewer.layers.selection.active = self.layers["region"]
        self._refresh_row()
        self._update_enabled()
        self.guidance_done.emit("done")

    def _guidance_error(self, message: str) -> None:
        _show_error(message)
        self._update_enabled()
        self.guidance_done.emit("error")

    def next_suspect(self) -> None:
        """Centre the view on the largest remaining suspect region and select it."""
        if self.session is None or self.session.peak_um is None:
            _show_error("Compute the focus peak first.")
            return
        r = self.session.next_suspect_region(self.threshold.value())
        if r is None:
            self.info_label.setText("No suspect region left.")
            return
        cy, cx = r["centroid"]
        from napari_gplws.widgets._view3d import camera_of

        world = self.layers["gt"].data_to_world((cy, cx))
        camera_of(self.viewer).center = tuple(float(c) for c in world[-2:])
        y0, y1, x0, x1 = r["bbox"]
        region = np.zeros(self.session.shape, np.uint8)
        region[y0:y1, x0:x1][self.session.suspect_map(self.threshold.value())[y0:y1, x0:x1]] = 1
        self.layers["region"].data = region
        self.info_label.setText(
            f"Suspect region of {r['pixels']} px at (y={cy:.0f}, x={cx:.0f}) selected: off by "
            f"{r['disagreement_um']:.2f} µm on average, focus-curve confidence {r['confidence']:.2f}."
        )

