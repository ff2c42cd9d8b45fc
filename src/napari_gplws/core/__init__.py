"""Old home of the numerical core, kept for one release so that old import paths still work.

The code now lives in domain subpackages (``napari_gplws.io``, ``.dff``, ``.defocus``,
``.models``, ``.sim``, ``.metrology``, ``.evaluation``, ``.annotate``, ``.batching``,
``.training``); see ``docs/architecture.md``. Importing ``napari_gplws.core.<old name>``
returns the module at its new home and emits a :class:`DeprecationWarning` naming it.
``python -m napari_gplws.core.train`` and ``python -m napari_gplws.core.train_ldse``, the
commands recorded in the packaged model cards, still run (see ``train.py`` and
``train_ldse.py`` beside this file).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: Old module name under ``napari_gplws.core`` → its new home.
MOVED = {
    "annotate": "napari_gplws.annotate",
    "autofocus": "napari_gplws.defocus",
    "autofocus_data": "napari_gplws.training.ldse_data",
    "batch": "napari_gplws.batching",
    "callbacks": "napari_gplws._shared.callbacks",
    "datasets": "napari_gplws.training.gplws_data",
    "defocus_fit": "napari_gplws.defocus.fit",
    "defocus_sim": "napari_gplws.sim.defocus_tiles",
    "errors": "napari_gplws.errors",
    "evaluate": "napari_gplws.evaluation.depth_benchmark",
    "focus": "napari_gplws.dff.classical",
    "focus_measures": "napari_gplws.dff.measures",
    "inference": "napari_gplws.dff.network",
    "io": "napari_gplws.io",
    "metrics": "napari_gplws.evaluation.metrics",
    "models": "napari_gplws.models",
    "models.gplws": "napari_gplws.models.gplws",
    "models.ldse": "napari_gplws.models.ldse",
    "models.registry": "napari_gplws.models.registry",
    "outofcore": "napari_gplws.dff.outofcore",
    "profile": "napari_gplws.metrology.profile",
    "psf": "napari_gplws.sim.psf",
    "region_error": "napari_gplws.evaluation.region_error",
    "roughness": "napari_gplws.metrology.roughness",
    "stack": "napari_gplws.stack",
    "surface": "napari_gplws.metrology.mesh",
    "synth": "napari_gplws.sim.focus_stacks",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``napari_gplws.core.<old>`` as the module at its new home, with a warning."""

    prefix = __name__ + "."

    def find_spec(self, fullname, path=None, target=None):
        old = fullname[len(self.prefix):] if fullname.startswith(self.prefix) else None
        if old not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = MOVED[spec.name[len(self.prefix):]]
        warnings.warn(
            f"{spec.name} has moved to {new}; the old name will be removed in the next release.",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(new)

    def exec_module(self, module):
        pass  # the module at its new home is already executed


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _MovedModuleFinder())
