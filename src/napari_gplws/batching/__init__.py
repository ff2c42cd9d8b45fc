"""Batch reconstruction of many focus stacks, resumable, on a dask.distributed cluster.

:func:`batch` (in :mod:`.run`) writes one folder per stack with the same files as
``gplws reconstruct``; see :mod:`.run` for how work is spread, resumed and reported.
The package is called ``batching`` so that it never shadows the root function
``napari_gplws.batch``.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "inputs": ["collect_inputs", "stack_names"],
        "layout": ["MANIFEST_NAME", "SUMMARY_CSV", "SUMMARY_JSON"],
        "manifest": ["outputs_valid"],
        "results": ["BatchSummary", "StackRecord"],
        "run": ["batch"],
        "task": ["reconstruct_to_folder"],
    },
)
