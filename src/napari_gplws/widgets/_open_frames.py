"""*Open folder…* in the Depth from focus dock: read a folder of frames, by pattern if given.

napari's File › Open reads a folder through the plugin's reader, which takes the frames of the
folder's majority format and warns about the files it left out; it has nowhere to type a
pattern. This row does: ``im_*.bmp`` reads only those frames (other images, a mask or a
ground-truth depth beside them are left alone). The folder is read in a worker thread and
added as an image layer with the reader's geometry (focus positions, pixel size, units).
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget

from napari_gplws.widgets._worker import Job

__all__ = ["OpenFramesRow"]


class OpenFramesRow(QWidget):
    """A pattern field and an *Open folder…* button; emits ``opened(layer name)``."""

    opened = Signal(str)
    failed = Signal(str)

    def __init__(self, viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.job: Job | None = None
        #: The reader's warnings of the last folder opened (e.g. the files it left out).
        self.messages: list[str] = []
        self.pattern = QLineEdit()
        self.pattern.setPlaceholderText("frame pattern, e.g. im_*.bmp (all frames if empty)")
        self.pattern.setToolTip(
            "Which files of the folder are frames, as a shell pattern (im_*.bmp, *.tif). "
            "Empty: the folder's majority image format; files left out are named."
        )
        self.button = QPushButton("Open folder…")
        self.button.setToolTip("Read a folder of frames as a stack layer.")
        self.button.clicked.connect(self.choose)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.pattern, 1)
        row.addWidget(self.button)

    def choose(self) -> None:
        """Ask for a folder, then read it."""
        folder = QFileDialog.getExistingDirectory(self, "Folder of focus-stack frames")
        if folder:
            self.open_folder(folder)

    def open_folder(self, folder: str) -> None:
        """Read ``folder`` (with the pattern typed, if any) in a worker; add it as a layer."""
        pattern = self.pattern.text().strip() or None

        def task(progress: Any, cancel: Any) -> Any:
            import warnings

            from napari_gplws._reader import read_focus_stack

            with warnings.catch_warnings(record=True) as caught:  # e.g. files left out
                warnings.simplefilter("always", UserWarning)
                layers = read_focus_stack(folder, pattern=pattern)
            return layers, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]

        self.button.setEnabled(False)
        self.job = Job(
            task, description=f"Reading {folder}", on_done=self._add, on_error=self._fail,
            on_finished=lambda: self.button.setEnabled(True), activity=False, parent=self,
        )  # fmt: skip
        self.job.start()

    def _add(self, result: tuple[list, list[str]]) -> None:
        from napari.utils.notifications import show_warning

        layers, self.messages = result
        for message in self.messages:  # what the reader left out, and why
            show_warning(message)
        data, kwargs, _ = layers[0]
        layer = self.viewer.add_image(data, **kwargs)
        self.opened.emit(layer.name)

    def _fail(self, message: str) -> None:
        from napari.utils.notifications import show_error

        show_error(message)
        self.failed.emit(message)
