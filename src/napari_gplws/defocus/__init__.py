"""Autofocus QC: signed defocus per region of a microscope frame, by LDSE-NET.

:func:`autofocus` cuts a frame into tiles, drops blank ones, estimates each tile's signed
defocus (µm of focus-drive travel, ``frame position − best-focus position``) with
:func:`predict_defocus` and summarises it per region of a grid; given a focal stack with
focus positions it also measures each region's true defocus from its focus curve and the
error. :class:`AutofocusResult` holds the outcome, :func:`plot_heatmap` draws it and
:func:`fit_best_focus` settles the direction from several frames at known positions.

Modules: ``tiles`` (tiling, blank tiles), ``predict`` (the network step), ``regions``
(region geometry, focus curves), ``result``, ``analyse`` (:func:`autofocus`), ``fit``,
``plot``. What it is not: the ``gplws autofocus`` command (:mod:`napari_gplws.cli.autofocus`),
its benchmark (:mod:`napari_gplws.evaluation.defocus_speed`) or the napari dock
(:mod:`napari_gplws.widgets.focal_error_widget`). Submodules load on first use, so
importing this package imports neither torch nor matplotlib.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "analyse": ["autofocus"],
        "fit": ["MAGNITUDE_SIGMA_UM", "FrameFit", "fit_best_focus"],
        "plot": ["plot_heatmap"],
        "predict": ["predict_defocus"],
        "regions": [
            "best_focus_from_curve",
            "region_bounds",
            "region_focus_curves",
            "region_index",
        ],
        "result": ["CONFIDENT_DIRECTION", "AutofocusResult"],
        "tiles": [
            "BLANK_DEVIATION",
            "MIN_CONTENT",
            "TILE_PX",
            "content_fraction",
            "cut_tiles",
            "tile_origins",
        ],
    },
)
