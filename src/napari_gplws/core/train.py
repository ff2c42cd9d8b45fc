"""Deprecated ``python -m napari_gplws.core.train``, the command in the packaged model card.

It still runs for one release and forwards to ``gplws train gplws``
(:func:`napari_gplws.cli.train.gplws_main`). Attributes forward to where the code lives
now: the trainer (:mod:`napari_gplws.training.gplws`, ``.gplws_sources``, ``.gplws_card``)
and the command line (``train_main`` / ``build_parser`` in :mod:`napari_gplws.cli.train`).
"""

from __future__ import annotations

import warnings
from typing import Any

#: Former names of this module → (new module, new name).
_RENAMED = {
    "train_main": ("napari_gplws.cli.train", "gplws_main"),
    "build_parser": ("napari_gplws.cli.train", "build_gplws_parser"),
}
#: Modules searched, in order, for any other name.
_HOMES = (
    "napari_gplws.training.gplws",
    "napari_gplws.training.gplws_sources",
    "napari_gplws.training.gplws_card",
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
        "python -m napari_gplws.core.train has moved to 'gplws train gplws'; "
        "the old command will be removed in the next release.",
        DeprecationWarning,
        stacklevel=1,
    )
    from napari_gplws.cli.train import gplws_main

    raise SystemExit(gplws_main())
