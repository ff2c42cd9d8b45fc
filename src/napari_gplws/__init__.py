"""napari-gplws: height maps, all-in-focus images and autofocus diagnostics from focus stacks.

The public Python API mirrors the ``gplws`` command line:

>>> import napari_gplws
>>> result = napari_gplws.reconstruct(stack, focus_positions=None, method="sml")  # doctest: +SKIP
>>> result.depth, result.aif, result.confidence, result.units, result.timings  # doctest: +SKIP

Heavy imports (torch, the networks) happen on first use, not at import or plugin discovery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "FocalStack",
    "Reconstruction",
    "__version__",
    "autofocus",
    "batch",
    "predict_defocus",
    "read_stack",
    "reconstruct",
]

if TYPE_CHECKING:  # pragma: no cover
    from napari_gplws.api import Reconstruction, reconstruct
    from napari_gplws.batching.run import batch
    from napari_gplws.defocus import autofocus, predict_defocus
    from napari_gplws.io import read_stack
    from napari_gplws.stack import FocalStack


def __getattr__(name: str) -> Any:
    # Lazy attribute access keeps `import napari_gplws` (and npe2 discovery) cheap.
    if name in ("reconstruct", "Reconstruction"):
        from napari_gplws import api

        return getattr(api, name)
    if name == "FocalStack":
        from napari_gplws.stack import FocalStack

        return FocalStack
    if name == "read_stack":
        from napari_gplws.io import read_stack

        return read_stack
    if name in ("autofocus", "predict_defocus"):
        import napari_gplws.defocus as _autofocus

        return getattr(_autofocus, name)
    if name == "batch":
        from napari_gplws.batching.run import batch

        return batch
    raise AttributeError(f"module 'napari_gplws' has no attribute {name!r}")
