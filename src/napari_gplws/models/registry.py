"""Packaged network weights of both networks: find them, load them once, and write new ones.

Weights live in ``napari_gplws/weights/`` as ``<name>.safetensors`` (tensors only, no
pickle) with the network's configuration and a format tag in the safetensors metadata,
and a model card ``<name>.json`` (+ ``<name>.md``, rendered by :mod:`.cards`) beside them
saying what data trained them, the exact command, the seed, the wall time, parameter
counts and the metrics they reached.

* GPLWS-Net (depth from focus): :func:`load_gplws` / :func:`save_gplws`, *fused* weights
  (format ``gplws-fused/1``), default :data:`DEFAULT_GPLWS`;
* LDSE-NET (single-tile defocus): :func:`load_ldse` / :func:`save_ldse` (format
  ``ldse/1``), default :data:`DEFAULT_LDSE`.

A weights file is checked before it is used: a file that cannot be read (empty, truncated,
random bytes), broken configuration JSON, missing or extra tensors, tensors of the wrong
shape or dtype, and NaN or infinite values each give a :class:`~napari_gplws.errors.ModelError`
naming the file and the fix, never a traceback or a map of NaN. A folder may be given
instead of a file when it holds exactly one ``.safetensors`` file; its configuration may
then also come from a ``config.json`` beside it.

Loaded models are cached per (network, file, device), in eval mode with gradients off,
behind one lock, so that threads share one copy; writing weights clears the cache. This
module knows files and caching only; it does not train (:mod:`napari_gplws.training`) or
run inference (:mod:`napari_gplws.dff.network`, :mod:`napari_gplws.defocus`). torch is
imported on first load or save, not at import.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_gplws._shared.files import atomic_write, write_text_atomic
from napari_gplws.errors import ModelError

__all__ = [
    "DEFAULT_GPLWS",
    "DEFAULT_LDSE",
    "GPLWS_FORMAT",
    "LDSE_FORMAT",
    "WEIGHTS_DIR",
    "clear_cache",
    "has_default_weights",
    "load_gplws",
    "load_ldse",
    "model_card",
    "read_weights",
    "save_gplws",
    "save_ldse",
    "weights_path",
]

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_GPLWS = "gplws_default"
DEFAULT_LDSE = "ldse_default"
#: Format tags in the safetensors metadata of each network's weight files.
GPLWS_FORMAT = "gplws-fused/1"
LDSE_FORMAT = "ldse/1"
#: Former name of :data:`GPLWS_FORMAT`.
FORMAT = GPLWS_FORMAT

_DEFAULTS = {"gplws": DEFAULT_GPLWS, "ldse": DEFAULT_LDSE}
_CACHE: dict[tuple[str, ...], Any] = {}
_LOCK = threading.Lock()


# ------------------------------------------------------------------------------------------
# Finding weights and cards
# ------------------------------------------------------------------------------------------
def weights_path(name_or_path: str | Path = DEFAULT_GPLWS) -> Path:
    """Path of a weights file: a packaged name (``"gplws_default"``), a file or a folder.

    Parameters
    ----------
    name_or_path
        A name in :data:`WEIGHTS_DIR` (without suffix), or a path; a path ending in
        ``.safetensors`` or naming an existing file is returned as it is; a folder must
        hold exactly one ``.safetensors`` file, which is returned.

    Returns
    -------
    Path
        The file's path (it need not exist).

    Raises
    ------
    ModelError
        A folder with no ``.safetensors`` file, or with several.
    """
    p = Path(name_or_path)
    if p.is_dir():
        found = sorted(p.glob("*.safetensors"))
        if len(found) != 1:
            what = "no .safetensors file" if not found else (
                f"{len(found)} .safetensors files ({', '.join(f.name for f in found[:4])})"
            )
            raise ModelError(
                f"The weights folder '{p}' holds {what}; give the path of one weights file "
                "(…/name.safetensors) instead of the folder."
            )
        return found[0]
    if p.suffix == ".safetensors" or p.is_file():
        return p
    return WEIGHTS_DIR / f"{name_or_path}.safetensors"


_FIX = (
    "Replace it with an intact copy (reinstall napari-gplws for the packaged weights) or "
    "train new weights with `gplws train {net}`."
)


def _read_json(path: Path, what: str, net: str) -> Any:
    """Parse a JSON file beside the weights, or raise a :class:`ModelError` naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(
            f"The {what} '{path}' cannot be read ({exc}). " + _FIX.format(net=net)
        ) from None


def has_default_weights(network: str = "gplws") -> bool:
    """Whether the packaged default weights of a network (``"gplws"``, ``"ldse"``) are installed."""
    name = _DEFAULTS.get(network, network)
    return weights_path(name).is_file()


def model_card(name_or_path: str | Path = DEFAULT_GPLWS) -> dict[str, Any]:
    """The model card (JSON) next to a weights file, or ``{}`` when there is none."""
    card = weights_path(name_or_path).with_suffix(".json")
    if not card.is_file():
        return {}
    data = _read_json(card, "model card", "gplws|ldse")
    if not isinstance(data, dict):
        raise ModelError(
            f"The model card '{card}' is not a JSON object. " + _FIX.format(net="gplws|ldse")
        )
    return data


def read_weights(
    path: Path, expected_format: str, network: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """Tensors and metadata of a ``.safetensors`` weights file whose format tag must match.

    Parameters
    ----------
    path
        The weights file.
    expected_format
        Required ``format`` entry of the metadata (:data:`GPLWS_FORMAT`, :data:`LDSE_FORMAT`).
    network
        Name of the network for messages.

    Returns
    -------
    state, metadata
        The tensors by name and the file's metadata.

    Raises
    ------
    ModelError
        The file cannot be read (empty, truncated, not safetensors), or its ``format``
        metadata is not ``expected_format``.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    net = "ldse" if expected_format == LDSE_FORMAT else "gplws"
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelError(f"Cannot open the weights file '{path}': {exc.strerror or exc}.") from None
    if size == 0:
        raise ModelError(f"The weights file '{path}' is empty. " + _FIX.format(net=net))
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - turned into a message for a person
        detail = " ".join(str(exc).split())[:200]
        raise ModelError(
            f"The weights file '{path}' is damaged or not a safetensors file ({detail}). "
            + _FIX.format(net=net)
        ) from None
    if meta.get("format") != expected_format:
        raise ModelError(
            f"'{path}' does not hold {network} weights (format {meta.get('format')!r}, "
            f"expected {expected_format!r}). Give a {network} weights file."
        )
    return state, meta


def _config_dict(path: Path, meta: dict[str, str], net: str) -> dict[str, Any]:
    """The network configuration: the file's metadata, else a ``config.json`` beside it."""
    text, source = meta.get("config"), f"configuration in the metadata of '{path}'"
    beside = path.parent / "config.json"
    if text is None and beside.is_file():
        data = _read_json(beside, "configuration file", net)
        source = f"configuration file '{beside}'"
    else:
        try:
            data = json.loads(text or "{}")
        except json.JSONDecodeError as exc:
            raise ModelError(f"The {source} is not valid JSON ({exc}). " + _FIX.format(net=net)) from None
    if not isinstance(data, dict):
        raise ModelError(f"The {source} is not a JSON object. " + _FIX.format(net=net))
    return data


def _build(path: Path, net: str, make: Callable[[], Any]) -> Any:
    """``make()`` (a network from its configuration), with bad configurations as ModelError."""
    try:
        return make()
    except (TypeError, ValueError, KeyError, AssertionError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise ModelError(
            f"The configuration stored with '{path}' does not describe a valid network "
            f"({type(exc).__name__}: {detail}). " + _FIX.format(net=net)
        ) from None


def _check_state(path: Path, state: dict[str, Any], model: Any, network: str, net: str) -> None:
    """Refuse tensors that do not fit ``model``: missing, extra, wrong shape or dtype, NaN/Inf.

    ``load_state_dict`` alone would cast a wrong dtype silently and load NaN values that
    turn every map into NaN; this checks every tensor first (a few ms for these networks).
    """
    import torch

    ref = model.state_dict()
    problems = []
    missing = [k for k in ref if k not in state]
    extra = [k for k in state if k not in ref]
    if missing:
        problems.append(f"{len(missing)} missing tensor(s) ({', '.join(missing[:3])})")
    if extra:
        problems.append(f"{len(extra)} unexpected tensor(s) ({', '.join(extra[:3])})")
    shape = [k for k in ref if k in state and tuple(state[k].shape) != tuple(ref[k].shape)]
    if shape:
        k = shape[0]
        problems.append(
            f"{len(shape)} tensor(s) of the wrong shape ({k}: {tuple(state[k].shape)}, "
            f"expected {tuple(ref[k].shape)})"
        )
    dtype = [k for k in ref if k in state and k not in shape and state[k].dtype != ref[k].dtype]
    if dtype:
        k = dtype[0]
        problems.append(
            f"{len(dtype)} tensor(s) of the wrong dtype ({k}: {state[k].dtype}, expected {ref[k].dtype})"
        )
    if not problems:
        bad = [
            k for k, v in state.items()
            if v.is_floating_point() and not bool(torch.isfinite(v).all())
        ]
        if bad:
            problems.append(f"NaN or infinite values in {len(bad)} tensor(s) ({', '.join(bad[:3])})")
    if problems:
        raise ModelError(
            f"The weights in '{path}' do not fit {network}: {'; '.join(problems)}. "
            + _FIX.format(net=net)
        )


# ------------------------------------------------------------------------------------------
# Loading (once, cached)
# ------------------------------------------------------------------------------------------
def _cached(key: tuple[str, ...], build: Callable[[], Any]) -> Any:
    """The cached model under ``key``, built (under the lock) on first use."""
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


def _frozen(model: Any) -> Any:
    """``model`` with gradients switched off for every parameter."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_gplws(
    name_or_path: str | Path = DEFAULT_GPLWS, device: str = "cpu", compile: bool = False
) -> Any:
    """Load a fused :class:`~.gplws.GPLWSNet` in eval mode, once per (file, device[, compile]).

    Parameters
    ----------
    name_or_path
        Packaged weights name or path to a ``.safetensors`` file.
    device
        torch device string.
    compile
        Return the model wrapped by ``torch.compile`` (static shapes: it compiles once per
        tile shape, so keep the tile size fixed; cached separately).

    Returns
    -------
    GPLWSNet
        The shared, cached model (do not modify it).

    Raises
    ------
    ModelError
        The file is missing or does not hold GPLWS-Net weights.
    """
    path = weights_path(name_or_path)
    if compile:
        base = load_gplws(name_or_path, device)  # outside the (non-reentrant) lock

        def build_compiled() -> Any:
            import torch

            return torch.compile(base, dynamic=False)  # dynamic shapes fail to lower (torch 2.13)

        return _cached(("gplws", str(path.resolve()), str(device), "compiled"), build_compiled)

    def build() -> Any:
        if not path.is_file():
            raise ModelError(
                f"GPLWS-Net weights '{path}' are missing. Reinstall napari-gplws (the default "
                "weights ship with it) or train them with `gplws train gplws`."
            )
        import torch

        from napari_gplws.models.gplws import GPLWSConfig, GPLWSNet

        state, meta = read_weights(path, GPLWS_FORMAT, "fused GPLWS-Net")
        cfg = _config_dict(path, meta, "gplws")
        model = _build(path, "gplws", lambda: GPLWSNet(GPLWSConfig.from_dict(cfg)).reparameterize())
        _check_state(path, state, model, "GPLWS-Net", "gplws")
        model.load_state_dict(state, strict=True)
        return _frozen(model.to(torch.device(device)).eval())

    return _cached(("gplws", str(path.resolve()), str(device)), build)


def load_ldse(name_or_path: str | Path = DEFAULT_LDSE, device: str = "cpu") -> Any:
    """Load LDSE-NET weights (packaged name or ``.safetensors`` path) once per (file, device).

    Parameters
    ----------
    name_or_path
        Packaged weights name or path to a ``.safetensors`` file.
    device
        torch device string.

    Returns
    -------
    LDSENet
        The shared, cached model in eval mode and channels-last memory layout (do not
        modify it).

    Raises
    ------
    ModelError
        The file is missing or does not hold LDSE-NET weights.
    """
    path = weights_path(name_or_path)

    def build() -> Any:
        if not path.is_file():
            raise ModelError(
                f"LDSE-NET weights '{path}' are missing. Reinstall napari-gplws (the default "
                "weights ship with it) or train them with `gplws train ldse`."
            )
        import torch

        from napari_gplws.models.ldse import LDSEConfig, LDSENet

        state, meta = read_weights(path, LDSE_FORMAT, "LDSE-NET")
        cfg = _config_dict(path, meta, "ldse")
        model = _build(path, "ldse", lambda: LDSENet(LDSEConfig.from_dict(cfg)))
        _check_state(path, state, model, "LDSE-NET", "ldse")
        model.load_state_dict(state, strict=True)
        # channels-last memory layout: about 1.5× faster convolutions on CPU (oneDNN).
        model = model.to(torch.device(device), memory_format=torch.channels_last).eval()
        return _frozen(model)

    return _cached(("ldse", str(path.resolve()), str(device)), build)


def clear_cache() -> None:
    """Forget every loaded model of both networks (e.g. after new weights were written)."""
    with _LOCK:
        _CACHE.clear()


# ------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------
def _write(
    model: Any,
    path: str | Path,
    fmt: str,
    card: dict[str, Any] | None,
    markdown: Callable[[dict[str, Any]], str],
) -> Path:
    """Write ``model``'s tensors and config as safetensors, its card as JSON + Markdown."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {"format": fmt, "config": json.dumps(model.config.to_dict())}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=meta))
    if card is not None:
        text = json.dumps(card, indent=2, ensure_ascii=False) + "\n"
        write_text_atomic(path.with_suffix(".json"), text)
        write_text_atomic(path.with_suffix(".md"), markdown(card))
    clear_cache()
    return path


def save_gplws(model: Any, path: str | Path, card: dict[str, Any] | None = None) -> Path:
    """Fuse (if needed) and write a model as safetensors, plus its model card JSON/Markdown.

    Parameters
    ----------
    model
        A :class:`~.gplws.GPLWSNet` (a fused copy is written; the model itself is fused in place).
    path
        Target ``.safetensors`` path; the card goes to the same stem with ``.json``/``.md``.
    card
        Model-card content (JSON-serialisable), rendered by :func:`.cards.card_markdown`.

    Returns
    -------
    Path
        The weights path.
    """
    from napari_gplws.models.cards import card_markdown

    model.reparameterize()
    return _write(model, path, GPLWS_FORMAT, card, card_markdown)


def save_ldse(model: Any, path: str | Path, card: dict[str, Any] | None = None) -> Path:
    """Write LDSE-NET weights as safetensors (config in the metadata) and the model card.

    Parameters
    ----------
    model
        An :class:`~.ldse.LDSENet`.
    path
        Target ``.safetensors`` path; the card goes to the same stem with ``.json``/``.md``.
    card
        Model-card content (JSON-serialisable), rendered by :func:`.cards.ldse_card_markdown`.

    Returns
    -------
    Path
        The weights path.
    """
    from napari_gplws.models.cards import ldse_card_markdown

    return _write(model, path, LDSE_FORMAT, card, ldse_card_markdown)
