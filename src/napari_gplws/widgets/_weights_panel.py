"""The *Weights* box of the Focal error map dock: choose LDSE-NET weights, calibrate new ones.

* **Weights** — a chooser with the packaged weights, weights chosen or calibrated in this
  session, and *Choose file…* (a ``.safetensors`` file). Under it, one plain line says which
  weights are in use and, for calibrated weights, their held-out figures
  (:func:`napari_gplws.models.cards.weights_summary_line`).
* **Calibrate from stacks…** — asks for focus stacks of one microscope and where to write
  the weights, then runs ``gplws calibrate`` (:mod:`napari_gplws.training.calibrate`) in a
  background :class:`~._worker.Job` with a progress bar and Cancel. The calibration runs in
  a child process: training code stays out of the GUI process (only the command line
  imports it), the window stays responsive, and Cancel stops it cleanly (it saves its
  checkpoint; the same command with ``--resume`` continues it). Calibrated weights that
  improved on their held-out stacks are added to the chooser and selected.

Qt only; the calibration itself and the card's text live in the core.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QWidget,
)

from napari_gplws.errors import Cancelled, GplwsError
from napari_gplws.widgets._worker import CloseWatcher, Job

__all__ = ["CalibrationOutcome", "WeightsPanel", "weights_line"]

PACKAGED = "ldse_default"
_CHOOSE = "__choose__"
#: Progress lines of ``gplws calibrate --progress-lines`` (the CLI's PROGRESS_PREFIX; the
#: command line and the widgets are independent layers, so the text is repeated here).
_PROGRESS = "GPLWS-PROGRESS"


def weights_line(weights: str | Path) -> str:
    """"Weights in use: …" with the card's one-line summary (held-out figures if calibrated)."""
    from napari_gplws.models.cards import weights_summary_line
    from napari_gplws.models.registry import model_card

    name = Path(weights).stem if str(weights).endswith(".safetensors") else str(weights)
    try:
        card = model_card(weights)
    except GplwsError as exc:
        return f"Weights in use: {name} (model card unreadable: {exc})"
    return "Weights in use: " + weights_summary_line(card, name)


@dataclass
class CalibrationOutcome:
    """What a calibration run ended with: ``kept`` and the output, and its last lines."""

    kept: bool
    output: Path
    text: str


def run_calibration(
    stacks: list[str], output: Path, minutes: float, focus_step: float | None,
    progress: Callable[[int, int], None], cancel: Callable[[], bool],
    min_content: float | None = None,
) -> CalibrationOutcome:
    """Run ``gplws calibrate`` in a child process; progress from its progress lines."""
    cmd = [sys.executable, "-m", "napari_gplws.cli", "calibrate", *stacks, "-o", str(output),
           "--minutes", f"{minutes:g}", "--progress-lines"]
    if min_content is not None:
        cmd += ["--min-content", f"{min_content:g}"]
    if focus_step:
        cmd += ["--focus-step", f"{focus_step:g}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            encoding="utf-8", errors="replace")
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    text: list[str] = []
    cancelled = False
    while True:
        if cancel() and not cancelled:
            cancelled = True
            proc.terminate()  # the command saves its checkpoint and stops
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            break
        if line.startswith(_PROGRESS):
            done, total = (int(v) for v in line.split()[1:3])
            progress(done, total)
        else:
            text.append(line.rstrip())
    code = proc.wait()
    if cancelled:
        raise Cancelled("Calibration cancelled; its checkpoint is kept (gplws calibrate --resume).")
    last = "\n".join(text[-8:])
    if code == 0:
        return CalibrationOutcome(True, output, last)
    if any(t.startswith("not kept") for t in text):
        return CalibrationOutcome(False, output, last)
    err = next((t for t in reversed(text) if "error:" in t), last or f"exit code {code}")
    raise GplwsError(err.split("error:", 1)[-1].strip())


class WeightsPanel(QGroupBox):
    """The Weights box (see the module docstring).

    Signals
    -------
    weights_changed(str)
        The chosen weights: a packaged name or a ``.safetensors`` path.
    calibration_finished(str)
        ``"kept"``, ``"not kept"``, ``"cancelled"`` or ``"error"``.
    """

    weights_changed = Signal(str)
    calibration_finished = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Weights", parent)
        self.job: Job | None = None
        #: Blank-tile threshold to calibrate with (the dock's own, once attached).
        self.min_content: Callable[[], float] | None = None
        self.combo = QComboBox()
        self.combo.addItem("Packaged (ldse_default)", PACKAGED)
        self.combo.addItem("Choose file…", _CHOOSE)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setStyleSheet("font-size: 9pt;")
        self.minutes = QDoubleSpinBox()
        self.minutes.setRange(0.5, 60.0)
        self.minutes.setValue(9.5)
        self.minutes.setSuffix(" min")
        self.minutes.setToolTip("Time box of the calibration (9.5 min is the measured recipe).")
        self.focus_step = QDoubleSpinBox()
        self.focus_step.setRange(0.0, 100.0)
        self.focus_step.setDecimals(3)
        self.focus_step.setSuffix(" µm")
        self.focus_step.setSpecialValueText("from the files")
        self.calibrate_button = QPushButton("Calibrate from stacks…")
        self.calibrate_button.setToolTip(
            "Fine-tune the weights on 8–16 focus stacks of this microscope that pass through "
            "focus (e.g. ±6 µm in 0.3 µm steps); whole stacks are held out to score it."
        )
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Weights", self.combo)
        form.addRow(self.summary)
        form.addRow("Calibration time", self.minutes)
        form.addRow("Focus step", self.focus_step)
        row = QHBoxLayout()
        row.addWidget(self.calibrate_button)
        row.addWidget(self.cancel_button)
        form.addRow(row)
        form.addRow(self.progress)
        form.addRow(self.status)
        self.setLayout(form)
        self._last = PACKAGED
        self.combo.currentIndexChanged.connect(self._on_combo)
        self.calibrate_button.clicked.connect(self._calibrate_clicked)
        self.cancel_button.clicked.connect(self.cancel)
        self._show(PACKAGED)

    @classmethod
    def attach(cls, dock: Any) -> WeightsPanel:
        """Put a panel under ``dock.weights_label`` and tie it to ``dock.weights``; closing
        the dock cancels a calibration."""
        panel = cls(dock)
        layout = dock.weights_label.parentWidget().layout()
        layout.insertWidget(layout.indexOf(dock.weights_label) + 1, panel)
        panel.weights_changed.connect(lambda w: setattr(dock, "weights", w))
        panel.min_content = dock.min_content.value
        panel._close_watch = CloseWatcher(dock, panel.cancel)
        return panel

    # --- choosing ------------------------------------------------------------------------
    @property
    def weights(self) -> str:
        """The chosen weights: a packaged name or a path."""
        return str(self.combo.currentData())

    def set_weights(self, weights: str | Path) -> None:
        """Choose ``weights`` (added to the list when new)."""
        value = str(weights)
        i = self.combo.findData(value)
        if i < 0:
            self.combo.insertItem(self.combo.count() - 1, Path(value).name, value)
            i = self.combo.findData(value)
        self.combo.setCurrentIndex(i)

    def _on_combo(self, *_: Any) -> None:
        value = self.combo.currentData()
        if value == _CHOOSE:
            path, _f = QFileDialog.getOpenFileName(
                self, "LDSE-NET weights", "", "Weights (*.safetensors)"
            )
            self.combo.blockSignals(True)
            self.combo.setCurrentIndex(max(self.combo.findData(self._last), 0))
            self.combo.blockSignals(False)
            if path:
                self.set_weights(path)
            return
        self._last = str(value)
        self._show(str(value))
        self.weights_changed.emit(str(value))

    def _show(self, weights: str) -> None:
        self.summary.setText(weights_line(weights))
        self.summary.setToolTip(str(weights))

    # --- calibrating ---------------------------------------------------------------------
    def _calibrate_clicked(self) -> None:
        stacks, _f = QFileDialog.getOpenFileNames(
            self, "Focus stacks of this microscope (8–16, through focus)", "",
            "Stacks (*.tif *.tiff *.ome.tif *.npy *.npz *.czi *.nd2 *.lif);;All files (*)",
        )
        if not stacks:
            return
        out, _f = QFileDialog.getSaveFileName(
            self, "Write calibrated weights", str(Path(stacks[0]).with_name("my_scope.safetensors")),
            "Weights (*.safetensors)",
        )
        if out:
            self.start_calibration(stacks, out)

    def start_calibration(self, stacks: list[str], output: str | Path) -> None:
        """Calibrate on ``stacks`` into ``output`` in the background."""
        if self.job is not None and self.job.running:
            return
        output = Path(output).with_suffix(".safetensors")
        minutes, step = float(self.minutes.value()), float(self.focus_step.value()) or None
        blank = self.min_content() if self.min_content is not None else None
        self.status.setText(f"Calibrating on {len(stacks)} stacks for up to {minutes:g} min…")
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.calibrate_button.setEnabled(False)
        self.cancel_button.setEnabled(True)

        def task(progress: Callable[[int, int], None], cancel: Callable[[], bool]) -> Any:
            return run_calibration(list(stacks), output, minutes, step, progress, cancel, blank)

        self.job = Job(task, description="Calibrating autofocus", on_done=self._done,
                       on_error=self._error, on_cancelled=self._cancelled,
                       on_finished=self._finished, activity=False, parent=self)
        self.job.progressed.connect(self._progressed)
        self.job.start()

    def cancel(self) -> None:
        """Stop the calibration (its checkpoint is kept)."""
        if self.job is not None:
            self.job.cancel()

    def _progressed(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(min(done, total))

    def _done(self, res: CalibrationOutcome) -> None:
        if res.kept:
            self.set_weights(str(res.output))
            self.status.setText(f"Calibrated weights written to {res.output} and chosen.")
            self.calibration_finished.emit("kept")
        else:
            self.status.setText(
                "The calibration did not improve on the held-out stacks; nothing was written. "
                "Try more stacks, a wider focus range or a longer time."
            )
            self.calibration_finished.emit("not kept")

    def _error(self, message: str) -> None:
        self.status.setText(f"Calibration failed: {message}")
        self.calibration_finished.emit("error")

    def _cancelled(self) -> None:
        self.status.setText("Calibration cancelled; nothing was written.")
        self.calibration_finished.emit("cancelled")

    def _finished(self) -> None:
        self.progress.setVisible(False)
        self.calibrate_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
