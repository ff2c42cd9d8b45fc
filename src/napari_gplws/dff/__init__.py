"""Depth from focus: classical focus measures and GPLWS-Net, in memory and out of core.

* :mod:`.methods` — the one registry of method names (``gplws`` and the focus measures).
* :mod:`.measures` — focus measures (SML, Tenengrad, GLV, variance of Laplacian, RDF).
* :mod:`.classical` — :func:`depth_from_focus`, the streaming classical engine, with the peak
  fit (:mod:`.peaks`), the edge-aware refinement (:mod:`.refine`) and its band machinery
  (:mod:`._engine`).
* :mod:`.network` — :func:`predict_depth`, GPLWS-Net tiled on CPU or GPU (:mod:`._tiles`).
* :mod:`.align` — :func:`align_stack` and the motion check :func:`detect_motion`
  (:mod:`._registration`); :mod:`.fusion` — :func:`fuse_pyramid`, the default all-in-focus.
* :mod:`.outofcore` — :func:`reconstruct_out_of_core` for zarr stacks larger than memory
  (:mod:`.outofcore_classical`, :mod:`.outofcore_network`, :mod:`._chunks`).

Nothing here reads files or imports napari; importing the package imports no torch.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "methods": ['CLASSICAL_METHODS', 'METHODS', 'METHOD_LABELS', 'NETWORK_METHODS', 'default_method', 'is_network', 'resolve_method'],
        "measures": ['DEFAULT_MEASURE', 'DEFAULT_WINDOW', 'FOCUS_MEASURES', 'focus_measure'],
        "align": ['Alignment', 'MotionEvidence', 'align_stack', 'detect_motion'],
        "fusion": ['FUSION_MODES', 'fuse_pyramid'],
        "classical": ['FocusResult', 'depth_from_focus'],
        "peaks": ['INTERPOLATIONS', 'focus_confidence', 'peak_offset'],
        "refine": ['refine_index'],
        "network": ['GPLWSResult', 'predict_depth'],
        "outofcore": ['OutOfCoreResult', 'ZARR_OUTPUT_NAMES', 'reconstruct_out_of_core'],
        "outofcore_classical": ['reconstruct_zarr'],
        "outofcore_network": ['predict_zarr'],
    },
)
