"""Deprecated home of ``python -m napari_gplws.core.train``, the command in the packaged model cards.

It still runs for one release and forwards to ``gplws train gplws``; attributes forward to
:mod:`napari_gplws.training.gplws`.
"""

from __future__ import annotations

import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    import importlib

    return getattr(importlib.import_module("napari_gplws.training.gplws"), name)


if __name__ == "__main__":
    warnings.warn(
        "python -m napari_gplws.core.train has moved to 'gplws train gplws'; "
        "the old command will be removed in the next release.",
        DeprecationWarning,
        stacklevel=1,
    )
    from napari_gplws.training.gplws import train_main

    raise SystemExit(train_main())
