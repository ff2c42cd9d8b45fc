"""Deprecated home of ``python -m napari_gplws.core.train_ldse``, the command in the packaged model cards.

It still runs for one release and forwards to ``gplws train ldse``; attributes forward to
:mod:`napari_gplws.training.ldse`.
"""

from __future__ import annotations

import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    import importlib

    return getattr(importlib.import_module("napari_gplws.training.ldse"), name)


if __name__ == "__main__":
    warnings.warn(
        "python -m napari_gplws.core.train_ldse has moved to 'gplws train ldse'; "
        "the old command will be removed in the next release.",
        DeprecationWarning,
        stacklevel=1,
    )
    from napari_gplws.training.ldse import train_main

    raise SystemExit(train_main())
