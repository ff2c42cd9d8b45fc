"""Neural networks of napari-gplws and their packaged weights.

* :mod:`.gplws` — GPLWS-Net, depth from focus (:class:`~.gplws.GPLWSNet`).
* :mod:`.registry` — find, load (once, cached) and write weights + model cards.

Importing this package does not import torch; the submodules do.
"""
