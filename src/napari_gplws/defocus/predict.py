"""Signed defocus of tiles by LDSE-NET: the network step of autofocus QC.

:func:`predict_defocus` runs LDSE-NET on an ``(M, H, W[, 3])`` array of tiles and returns
the signed defocus in µm of focus-drive travel per tile (``frame position − best-focus
position``; the model card says which physical direction positive is), in batches under
``torch.inference_mode``; optionally the unsigned magnitude too, and NaN for blank tiles.
torch is imported on the first call, not when this module is imported.

What it is not: tiling a frame (:mod:`napari_gplws.defocus.tiles`), the per-region map
(:mod:`napari_gplws.defocus.analyse`) or the network's definition and weights
(:mod:`napari_gplws.models.ldse`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from napari_gplws._shared.callbacks import CancelFn, ProgressFn, check_cancel, report
from napari_gplws._shared.device import resolve_device
from napari_gplws.defocus._checks import MAX_BATCH, check_fraction, check_int
from napari_gplws.defocus.tiles import MIN_CONTENT, content_fraction
from napari_gplws.errors import ModelError, StackError

__all__ = ["predict_defocus"]


def predict_defocus(
    tiles: np.ndarray,
    *,
    weights: str | Path = "ldse_default",
    device: str = "auto",
    batch_size: int = 64,
    reject_blank: bool = False,
    min_content: float = MIN_CONTENT,
    progress: ProgressFn = None,
    cancel: CancelFn = None,
    return_magnitude: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Signed defocus (µm of focus-drive travel) of each tile, by LDSE-NET.

    Parameters
    ----------
    tiles
        ``(M, 224, 224)`` grayscale or ``(M, 224, 224, 3)`` RGB, any integer or float dtype
        (floats are read as ``[0, 1]``); a single ``(224, 224[, 3])`` tile is accepted. Other
        sizes (≥ 32 px) work but are outside what the weights were trained for.
    weights
        Packaged weights name or path to a ``.safetensors`` file.
    device
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
    batch_size
        Tiles per forward pass.
    reject_blank
        Return NaN for tiles that the blank discriminant rejects (:func:`content_fraction`
        below ``min_content``) instead of a meaningless number.
    progress, cancel
        ``progress(done, total)`` after each batch; ``cancel()`` is checked before each.
    return_magnitude
        Also return the network's unsigned defocus estimate ``|z|`` (µm). The signed value
        is ``magnitude · tanh(sign logit)``: it shrinks towards 0 when the network is unsure
        of the direction, so ``|defocus| ≤ magnitude``; the magnitude says how far out of
        focus a tile is even then.

    Returns
    -------
    numpy.ndarray or (numpy.ndarray, numpy.ndarray)
        ``(M,)`` float32 defocus in µm (NaN for rejected tiles), and with
        ``return_magnitude`` the ``(M,)`` magnitude in µm.

    Raises
    ------
    StackError
        Tiles of the wrong shape, ``batch_size`` outside 1…4096 or ``min_content``
        outside 0…1.
    ModelError
        Weights missing, damaged or giving non-finite output, or device unavailable.
    Cancelled
        When ``cancel()`` returned True.

    Examples
    --------
    >>> tiles = np.random.default_rng(0).integers(0, 255, (2, 224, 224), dtype=np.uint8)
    >>> predict_defocus(tiles, device="cpu").shape  # doctest: +SKIP
    (2,)
    """
    batch_size = check_int("batch_size", batch_size, 1, MAX_BATCH)
    min_content = check_fraction("min_content", min_content)
    a = np.asarray(tiles)
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3 and a.shape[0] != 3 and a.shape[1] > 3):
        a = a[None]
    if not (a.ndim == 3 or (a.ndim == 4 and a.shape[-1] == 3)) or min(a.shape[1:3]) < 32:
        raise StackError(f"Tiles must be (M, 224, 224) or (M, 224, 224, 3); got shape {a.shape}.")
    if a.dtype.kind not in "uif":
        raise StackError(f"Unsupported tile dtype {a.dtype}; use integer or float data.")
    import torch

    from napari_gplws.models.ldse import prepare_tiles
    from napari_gplws.models.registry import load_ldse

    dev = resolve_device(device)
    model = load_ldse(weights, dev)
    out = np.full(len(a), np.nan, np.float32)
    mag = np.full(len(a), np.nan, np.float32)
    keep = np.ones(len(a), bool)
    if reject_blank:
        keep = content_fraction(a) >= min_content
    idx = np.flatnonzero(keep)
    total = max(math.ceil(len(idx) / batch_size), 1)
    with torch.inference_mode():
        for b, i in enumerate(range(0, len(idx), batch_size)):
            check_cancel(cancel)
            sel = idx[i : i + batch_size]
            x = torch.from_numpy(prepare_tiles(a[sel])).to(dev)
            x = x.contiguous(memory_format=torch.channels_last)
            m, s = model.forward_parts(x)
            mag[sel] = m.float().cpu().numpy()
            out[sel] = (m * torch.tanh(s)).float().cpu().numpy()
            report(progress, b + 1, total)
    if not (np.isfinite(out[idx]).all() and np.isfinite(mag[idx]).all()):
        raise ModelError(
            f"LDSE-NET ('{weights}') gave NaN or infinite defocus for finite tiles; its weights "
            "are damaged or unsuitable. Use the packaged weights (reinstall napari-gplws) or "
            "retrain them with `gplws train ldse`."
        )
    return (out, mag) if return_magnitude else out
