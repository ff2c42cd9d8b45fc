"""Numerical core of napari-gplws: numpy/torch only, no Qt and no napari imports.

Everything here is usable from a script, a notebook or the CLI without a display.
Long-running functions take two plain callables, ``progress(done, total)`` and
``cancel() -> bool``, so the same code drives a tqdm bar or a napari progress bar.
"""
