"""The one registry of reconstruction methods: their names, display labels and kinds.

Every part of the product that offers or checks a method name (the Python API, the CLI,
batch, out-of-core, evaluation and the Depth from focus dock) reads it from here, so a
new method is added in one place. The classical names are the focus measures of
:mod:`napari_gplws.dff.measures` (a test keeps the two lists equal); ``gplws`` is the
network. This module imports nothing heavy.
"""

from __future__ import annotations

from napari_gplws.errors import StackError

#: Classical focus measures available as methods (see :mod:`napari_gplws.dff.classical`).
CLASSICAL_METHODS: tuple[str, ...] = ("sml", "tenengrad", "glv", "lapvar", "rdf")
#: Learned methods (see :mod:`napari_gplws.dff.network`).
NETWORK_METHODS: tuple[str, ...] = ("gplws",)
#: Every method name, the network first.
METHODS: tuple[str, ...] = NETWORK_METHODS + CLASSICAL_METHODS

#: What a person reads for each method (menus, reports).
METHOD_LABELS: dict[str, str] = {
    "gplws": "GPLWS-Net (network)",
    "sml": "SML: sum of modified Laplacian",
    "tenengrad": "Tenengrad (Sobel gradient)",
    "glv": "GLV: grey-level variance",
    "lapvar": "Variance of Laplacian",
    "rdf": "RDF: ring difference filter",
}

#: The classical measure used when the network's weights are not installed.
FALLBACK_METHOD = "sml"


def default_method() -> str:
    """The network when its packaged weights are present, else the best classical measure."""
    try:
        from napari_gplws.models.registry import has_default_weights

        if has_default_weights("gplws"):
            return "gplws"
    except ImportError:
        pass
    return FALLBACK_METHOD


def resolve_method(method: str | None) -> str:
    """The lower-case method name to run: ``None`` means :func:`default_method`.

    Raises
    ------
    StackError
        The name is not one of :data:`METHODS`; the message lists them.
    """
    name = (method or default_method()).lower()
    if name not in METHODS:
        raise StackError(f"Unknown method '{method}'; choose one of: {', '.join(METHODS)}.")
    return name


def is_network(method: str) -> bool:
    """Whether ``method`` (a resolved name) runs a network rather than a focus measure."""
    return method.lower() not in CLASSICAL_METHODS
