"""Packaged network weights: find them, load them once, and write new ones.

Weights live in ``napari_gplws/weights/`` as ``<name>.safetensors`` (tensors of the *fused*
network, no pickle) with the network's configuration in the safetensors metadata, and a model
card ``<name>.json`` (+ ``<name>.md``) beside them saying what data trained them, the exact
command, the seed, the wall time, parameter counts and the metrics they reached.

This module knows files and caching only; it does not train (:mod:`..train`) or run
inference (:mod:`..inference`).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from napari_gplws.errors import ModelError

__all__ = [
    "DEFAULT_GPLWS",
    "WEIGHTS_DIR",
    "clear_cache",
    "has_default_weights",
    "load_gplws",
    "model_card",
    "save_gplws",
    "weights_path",
]

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_GPLWS = "gplws_default"
FORMAT = "gplws-fused/1"

_CACHE: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def weights_path(name_or_path: str | Path = DEFAULT_GPLWS) -> Path:
    """Path of a weights file: a packaged name (``"gplws_default"``) or a path to a file."""
    p = Path(name_or_path)
    if p.suffix == ".safetensors" or p.is_file():
        return p
    return WEIGHTS_DIR / f"{name_or_path}.safetensors"


def has_default_weights(network: str = "gplws") -> bool:
    """Whether the packaged default weights of a network are installed."""
    name = {"gplws": DEFAULT_GPLWS}.get(network, network)
    return weights_path(name).is_file()


def model_card(name_or_path: str | Path = DEFAULT_GPLWS) -> dict[str, Any]:
    """The model card (JSON) next to a weights file, or ``{}`` when there is none."""
    card = weights_path(name_or_path).with_suffix(".json")
    if not card.is_file():
        return {}
    return json.loads(card.read_text(encoding="utf-8"))


def read_weights(path: Path, expected_format: str, network: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Tensors and metadata of a ``.safetensors`` weights file whose format tag must match.

    Raises
    ------
    ModelError
        The file cannot be read, or its ``format`` metadata is not ``expected_format``.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - turned into a message for a person
        raise ModelError(f"Cannot read the weights file '{path}': {exc}.") from None
    if meta.get("format") != expected_format:
        raise ModelError(
            f"'{path}' does not hold {network} weights (format {meta.get('format')!r}, "
            f"expected {expected_format!r})."
        )
    return state, meta


def load_gplws(name_or_path: str | Path = DEFAULT_GPLWS, device: str = "cpu", compile: bool = False) -> Any:
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

    Raises
    ------
    ModelError
        The file is missing or does not hold GPLWS-Net weights.
    """
    path = weights_path(name_or_path)
    if compile:
        key_c = (str(path.resolve()), str(device), "compiled")
        base = load_gplws(name_or_path, device)  # outside the (non-reentrant) lock
        with _LOCK:
            if key_c not in _CACHE:
                import torch

                compiled = torch.compile(base, dynamic=False)  # dynamic shapes fail to lower (torch 2.13)
                _CACHE[key_c] = compiled
            return _CACHE[key_c]
    key = (str(path.resolve()), str(device))
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        if not path.is_file():
            raise ModelError(
                f"GPLWS-Net weights '{path}' are missing. Reinstall napari-gplws (the default "
                "weights ship with it) or train them with `gplws train gplws`."
            )
        import torch

        from napari_gplws.models.gplws import GPLWSConfig, GPLWSNet

        state, meta = read_weights(path, FORMAT, "fused GPLWS-Net")
        config = GPLWSConfig.from_dict(json.loads(meta.get("config", "{}")))
        model = GPLWSNet(config).reparameterize()
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelError(f"The weights in '{path}' do not fit GPLWS-Net {config}: {exc}") from None
        model = model.to(torch.device(device)).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        _CACHE[key] = model
        return model


def save_gplws(model: Any, path: str | Path, card: dict[str, Any] | None = None) -> Path:
    """Fuse (if needed) and write a model as safetensors, plus its model card JSON/Markdown.

    Parameters
    ----------
    model
        A :class:`~.gplws.GPLWSNet` (a fused copy is written; the model itself is fused in place).
    path
        Target ``.safetensors`` path; the card goes to the same stem with ``.json``/``.md``.
    card
        Model-card content (JSON-serialisable).

    Returns
    -------
    Path
        The weights path.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.reparameterize()
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": json.dumps(model.config.to_dict())}
    save_file(state, str(path), metadata=meta)
    if card is not None:
        path.with_suffix(".json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        path.with_suffix(".md").write_text(card_markdown(card), encoding="utf-8")
    clear_cache()
    return path


def card_markdown(card: dict[str, Any]) -> str:
    """Render a model card dict as Markdown."""
    lines = [f"# Model card: {card.get('name', 'GPLWS-Net')}", ""]
    for key in ("summary", "data", "command", "seed", "steps", "epochs", "wall_time_min", "device",
                "params_train", "params_fused", "config"):
        if key in card:
            lines.append(f"- **{key}**: {card[key] if not isinstance(card[key], (dict, list)) else json.dumps(card[key])}")
    table = card.get("benchmark", {}).get("table")
    if table:
        lines += ["", "## Held-out synthetic benchmark", "", str(card["benchmark"].get("description", "")), "", table]
    if card.get("validation"):
        lines += ["", "## Final validation (training renderer, held-out seeds)", "",
                  "```", json.dumps(card["validation"], indent=1), "```"]
    return "\n".join(lines) + "\n"


def clear_cache() -> None:
    """Forget every loaded model (e.g. after new weights were written)."""
    with _LOCK:
        _CACHE.clear()
