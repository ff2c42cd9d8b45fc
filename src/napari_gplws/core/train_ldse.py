"""Deprecated ``python -m napari_gplws.core.train_ldse``, the command in the packaged model card.

It still runs for one release and forwards to ``gplws train ldse``
(:func:`napari_gplws.cli.train.ldse_main`). Attributes forward to where the code lives
now: the trainer (:mod:`napari_gplws.training.ldse`, ``.ldse_config``, ``.ldse_card``),
the held-out evaluation (:mod:`napari_gplws.evaluation.defocus_metrics`) and the command
line (``train_main`` / ``build_parser`` in :mod:`napari_gplws.cli.train`).
"""

from __future__ import annotations

import warnings
from typing import Any

#: Former names of this module → (new module, new name).
_RENAMED = {
    "train_main": ("napari_gplws.cli.train", "ldse_main"),
    "build_parser": ("napari_gplws.cli.train", "build_ldse_parser"),
}
#: Modules searched, in order, for any other name.
_HOMES = (
    "napari_gplws.training.ldse",
    "napari_gplws.training.ldse_config",
    "napari_gplws.training.ldse_card",
    "napari_gplws.evaluation.defocus_metrics",
)


def __getattr__(name: str) -> Any:
    import importlib

    if name in _RENAMED:
        module, new = _RENAMED[name]
        return getattr(importlib.import_module(module), new)
    for module in _HOMES:
        mod = importlib.import_module(module)
        if hasattr(mod, name):
            return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    warnings.warn(
        "python -m napari_gplws.core.train_ldse has moved to 'gplws train ldse'; "
        "the old command will be removed in the next release.",
        DeprecationWarning,
        stacklevel=1,
    )
    from napari_gplws.cli.train import ldse_main

    raise SystemExit(ldse_main())
