"""napari dock widgets: Qt only, each one a thin layer over one core call.

Registered in ``napari.yaml`` (Plugins menu):

* **Depth from focus** — :class:`.depth_widget.DepthFromFocusWidget`
  (:func:`napari_gplws.reconstruct` + :mod:`napari_gplws.metrology.mesh`, exports,
  surface parameters from :mod:`napari_gplws.metrology.roughness`);
* **Height profile** — :class:`.profile_widget.HeightProfileWidget`
  (:mod:`napari_gplws.metrology.profile`);
* **Focal error map** — :class:`.focal_error_widget.FocalErrorMapWidget`
  (:func:`napari_gplws.defocus.analyse.autofocus`, :mod:`napari_gplws.evaluation.region_error`).

How a widget is built, so that the next one slots in the same way:

* a ``QWidget`` subclass whose ``__init__`` takes ``napari_viewer`` and which has a
  ``reset_choices()`` method (napari calls it when layers are added, removed, reordered or
  renamed) to refill its layer pickers (:class:`._layer_combo.LayerCombo`, which keeps a
  choice while layers are replaced and never jumps to a neighbour) from :mod:`._layers` (``stack_layers``,
  ``depth_layers``, ``shapes_layers``, or a new finder next to them);
* Run starts a :class:`._worker.Job` around a closure ``task(progress, cancel)`` that calls
  the core function with those two callbacks: progress bar in napari's activity area, Cancel
  between steps, :class:`~napari_gplws.errors.GplwsError` messages as notifications,
  controls disabled while it runs; the worker thread never touches a layer;
* on success the GUI thread builds the layers and hands them to :class:`._layers.OwnLayers`,
  which replaces this widget's previous outputs for the same input and nothing else; layers
  carry their units and provenance in ``metadata``;
* exports go through a core writer; the file dialog is the only Qt part.

This package imports no widget module at import time, so plugin discovery stays light.
"""

__all__ = ["DepthFromFocusWidget", "FocalErrorMapWidget", "HeightProfileWidget"]


def __getattr__(name: str):
    if name == "DepthFromFocusWidget":
        from napari_gplws.widgets.depth_widget import DepthFromFocusWidget

        return DepthFromFocusWidget
    if name == "HeightProfileWidget":
        from napari_gplws.widgets.profile_widget import HeightProfileWidget

        return HeightProfileWidget
    if name == "FocalErrorMapWidget":
        from napari_gplws.widgets.focal_error_widget import FocalErrorMapWidget

        return FocalErrorMapWidget
    raise AttributeError(name)
