"""GPLWS-Net on one batch of tiles: test-time-augmentation views, the network, and the
per-pixel statistics of its probabilities.

Shared by the in-memory (:mod:`.network`) and out-of-core (:mod:`.outofcore_network`)
paths, so both give the same numbers at the same speed. :func:`tile_outputs` takes
normalised luma tiles and returns, per tile, the expected frame index, the expected focus
position, the confidence and the per-frame probability averaged over the views.

On the CPU (the fast path) the network's input is prepared with NumPy: the tile is padded
once, the fixed focus prior is computed once per tile with OpenCV/SciPy filters
(:func:`._tiles.focus_prior`) and shared by every view it commutes with, the first
convolution reads the full-resolution planes directly (its kernel rearranged so that no
space-to-depth copy is needed), and the convolutions run through oneDNN with the activations kept in its
blocked layout (:func:`napari_gplws.models.gplws.onednn_features`), in bfloat16 where the
CPU has native bfloat16 instructions. The views of a small tile go through the network as
one batch; those of a large tile one after the other (memory). On other devices, or with
``torch.compile``, the whole network runs per view as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from napari_gplws.dff._tiles import focus_prior, pad_tile, space_to_depth

#: Views of test-time augmentation, in the order they are added: (quarter turns, mirror).
TTA_VIEWS: dict[int, tuple[tuple[int, bool], ...]] = {
    1: ((0, False),),
    2: ((0, False), (0, True)),
    4: ((0, False), (0, True), (2, False), (2, True)),
    8: ((0, False), (0, True), (2, False), (2, True), (1, False), (1, True), (3, False), (3, True)),
}
#: The views of a tile run as one batch when the batch has at most this many voxels
#: (frames × pixels); larger tiles run their views one after the other.
BATCH_VIEWS_VOXELS = 1 << 22


def _view(a: Any, turns: int, mirror: bool) -> Any:
    """The view of the last two axes of a NumPy array or torch tensor (mirror, then turn)."""
    if isinstance(a, np.ndarray):
        if mirror:
            a = a[..., ::-1]
        return np.ascontiguousarray(np.rot90(a, turns, axes=(-2, -1)))
    import torch

    if mirror:
        a = torch.flip(a, (-1,))
    return torch.rot90(a, turns, (-2, -1)) if turns else a


def _unview(a: Any, turns: int, mirror: bool) -> Any:
    """Inverse of :func:`_view` (torch tensors)."""
    import torch

    if turns:
        a = torch.rot90(a, -turns, (-2, -1))
    return torch.flip(a, (-1,)) if mirror else a


def _commutes_with_padding(turns: int, mirror: bool, ph: int, pw: int) -> bool:
    """Whether the view of the padded tile equals the padded view of the tile (the padding
    is at the end of H and W, so a view that flips a padded axis moves it)."""
    return (ph == 0 and pw == 0) or (turns == 0 and (not mirror or pw == 0))


def _d2s_maps(m: Any, s: int) -> Any:
    """``(B, s², h, w)`` per-sub-pixel maps -> ``(B, s·h, s·w)``."""
    b, _, h, w = m.shape
    return m.reshape(b, s, s, h, w).permute(0, 3, 1, 4, 2).reshape(b, h * s, w * s)


def _s2d_statistics(head: Any, x_in: Any, weights: Any, n: int) -> dict[str, Any]:
    """Per-pixel statistics of ``softmax_N(head)`` computed in the space-to-depth layout
    ``(B, s², N, h, w)`` (the N-volume is never rearranged): expected index and position,
    1 − entropy / log N and the probability-weighted mean of ``x_in`` (same layout; ``None``:
    no such mean).
    ``head`` (float32) is used as scratch space."""
    import torch

    lg = head.float()
    lg -= lg.amax(dim=2, keepdim=True)
    z = torch.exp(lg)
    b, c, _, h, w = z.shape
    z3 = z.view(b * c, n, h * w)
    sums = torch.matmul(weights, z3).view(b, c, 3, h, w)  # Σz, Σz·k, Σz·position
    total = sums[:, :, 0]
    zx = None if x_in is None else (z * x_in).sum(dim=2)
    zl = lg.mul_(z).sum(dim=2)  # the logits are not needed after this
    entropy = torch.log(total) - zl / total
    return {
        "index": sums[:, :, 1] / total,
        "dep": sums[:, :, 2] / total,
        "conf": (1.0 - entropy / math.log(n)).clamp_(0.0, 1.0),
        "aif": None if zx is None else zx / total,
        "prob": None,
    }


def _cpu_views(
    model: Any, x: np.ndarray, views: Sequence[tuple[int, bool]], bf16: bool, rel: np.ndarray,
    want_prob: bool, want_aif: bool = True,
) -> Iterator[dict[str, Any]]:
    """Per-view maps ``index``, ``dep``, ``conf`` ``(B, h, w)``, ``aif`` (probability-weighted
    normalised luma, with ``want_aif``) and, with ``want_prob``, ``prob`` ``(B, N, h, w)``,
    back in place, on the CPU fast path; yielded view by view (a large tile holds one view
    at a time). The network reads the padded full-resolution planes (luma, focus prior)
    through its full-resolution stem, so no space-to-depth copy is made of them."""
    import torch

    from napari_gplws.models.gplws import depth_to_space, onednn_features

    s = int(model.s2d)
    b, n, h, w = x.shape
    m = int(model.multiple)
    weights = torch.stack([torch.ones(n), torch.arange(n, dtype=torch.float32),
                           torch.as_tensor(rel, dtype=torch.float32)])
    prior = bool(model.config.focus_prior)

    def network_input(tiles: np.ndarray) -> np.ndarray:
        """``(B, N, h, w)`` -> padded planes ``(B, 1 or 2, N, H, W)`` float32."""
        padded = [pad_tile(t, m) for t in tiles]
        out = np.empty((len(tiles), 1 + prior, *padded[0].shape), np.float32)
        for i, t in enumerate(padded):
            out[i, 0] = t
            if prior:
                out[i, 1] = focus_prior(t)
        return out

    base = network_input(x)
    ph, pw = base.shape[-2] - h, base.shape[-1] - w
    together = len(views) * base[0].size <= 2 * BATCH_VIEWS_VOXELS
    groups: list[list[tuple[int, bool]]] = []
    for view in views:  # views whose inputs share a shape run as one batch
        same = groups and (view[0] - groups[-1][0][0]) % 2 == 0
        if together and same and _commutes_with_padding(*view, ph, pw):
            groups[-1].append(view)
        else:
            groups.append([view])
    for group in groups:
        shared = [_commutes_with_padding(t, mr, ph, pw) for t, mr in group]
        inputs = [_view(base, t, mr) if ok else network_input(_view(x, t, mr))
                  for (t, mr), ok in zip(group, shared, strict=True)]
        batch = torch.from_numpy(inputs[0] if len(inputs) == 1 else np.concatenate(inputs))
        head = onednn_features(model, batch, bf16=bf16, full_resolution=True)
        prob = depth_to_space(torch.softmax(head, dim=2), s) if want_prob else None
        luma = None
        if want_aif:  # the luma in the head's space-to-depth layout
            luma = torch.from_numpy(np.concatenate(
                [space_to_depth([inp[i, 0]], s)[None] for inp in inputs for i in range(len(inp))]
            ))
        stats = _s2d_statistics(head, luma, weights, n)  # overwrites head
        stats["prob"] = prob
        del head, batch
        for j, ((turns, mirror), ok) in enumerate(zip(group, shared, strict=True)):
            out = {}
            for key, val in stats.items():
                if val is None:
                    out[key] = None
                    continue
                full = val[j * b : (j + 1) * b]
                full = full if key == "prob" else _d2s_maps(full, s)
                if ok:
                    out[key] = _unview(full, turns, mirror)[..., :h, :w]
                else:  # crop in the view, then turn back
                    hv, wv = (w, h) if turns % 2 else (h, w)
                    out[key] = _unview(full[..., :hv, :wv], turns, mirror)
            yield out


def _device_view_logits(
    model: Any, x: np.ndarray, views: Sequence[tuple[int, bool]], device: str, amp: Any,
    to_device: Callable[[np.ndarray, str], Any],
) -> Iterator[Any]:
    """Logits of each view with the whole network on ``device`` (GPU, MPS, compiled)."""
    import torch

    xt = to_device(x.astype(np.float32, copy=False), device)[:, None]
    for turns, mirror in views:
        with torch.autocast(xt.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits = model(_view(xt, turns, mirror).contiguous())
        yield _unview(logits.float(), turns, mirror)


def tile_outputs(
    model: Any,
    x: np.ndarray,
    views: Sequence[tuple[int, bool]],
    device: str,
    amp: Any = None,
    fast_cpu: bool = True,
    rel_positions: np.ndarray | None = None,
    raw: np.ndarray | None = None,
    luma_range: tuple[float, float] | None = None,
    to_device: Callable[[np.ndarray, str], Any] | None = None,
    step: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Per-pixel outputs of a batch of tiles, averaged over the test-time-augmentation views.

    Parameters
    ----------
    model
        The fused GPLWS-Net (or its compiled wrapper, with ``fast_cpu=False``).
    x
        ``(B, N, h, w)`` float32: normalised luma tiles of one shape.
    views
        ``(quarter turns, mirror)`` pairs (:data:`TTA_VIEWS`).
    device, amp
        Where the network runs; autocast dtype (``None``: fp32). On the CPU fast path
        ``torch.bfloat16`` runs the convolutions in bfloat16.
    fast_cpu
        Use the CPU fast path (only with ``device == "cpu"``).
    rel_positions
        ``(N,)`` focus positions relative to the first (default: frame indices).
    raw, luma_range
        The tiles as read ``(B, N, h, w[, 3])`` for the all-in-focus image (``None``: no
        all-in-focus image); for grey tiles ``(lo, scale)`` of the normalisation lets the
        CPU path weight the normalised tiles instead (the same numbers).
    step
        Called after each view (progress, cancel).

    Returns
    -------
    dict
        ``index`` and ``depth`` (expected frame index and position relative to the first),
        ``confidence`` (1 − entropy / log N) ``(B, h, w)`` and ``aif`` ``(B, h, w[, 3])`` or
        ``None``; torch float32 tensors (on ``device``). Index, depth and the all-in-focus
        image are those of the probability averaged over the views, the confidence the
        mean of the views'.
    """
    import torch

    step = step or (lambda: None)
    n = x.shape[1]
    rel = np.arange(n, dtype=np.float64) if rel_positions is None else np.asarray(rel_positions)
    to_device = to_device or _plain_to_device
    acc: dict[str, Any] = {}
    grey_aif = raw is not None and raw.ndim == 4 and luma_range is not None
    if fast_cpu and device == "cpu":
        per_view: Iterator[dict[str, Any]] = _cpu_views(
            model, x, views, amp is torch.bfloat16, rel,
            want_prob=raw is not None and not grey_aif, want_aif=grey_aif,
        )
    else:
        per_view = _device_views(model, x, views, device, amp, to_device, rel)
    for out in per_view:
        for key, val in out.items():
            if val is not None:
                acc[key] = val if key not in acc else acc[key].add_(val)
        step()
    k = float(len(views))
    result = {"index": acc["index"] / k, "depth": acc["dep"] / k, "confidence": acc["conf"] / k, "aif": None}
    if raw is not None:
        if grey_aif and "aif" in acc:
            lo, scale = luma_range  # type: ignore[misc]
            result["aif"] = acc["aif"] / k * scale + lo
        else:
            prob = acc["prob"] / k
            raw_t = to_device(np.asarray(raw, np.float32), str(prob.device))
            eq = "bnyx,bnyxc->byxc" if raw_t.ndim == 5 else "bnyx,bnyx->byx"
            result["aif"] = torch.einsum(eq, prob, raw_t)
    return result


def _device_views(
    model: Any, x: np.ndarray, views: Sequence[tuple[int, bool]], device: str, amp: Any,
    to_device: Callable[[np.ndarray, str], Any], rel: np.ndarray,
) -> Iterator[dict[str, Any]]:
    """Per-view ``index``, ``dep``, ``conf`` and ``prob`` with the whole network on ``device``."""
    for logits in _device_view_logits(model, x, views, device, amp, to_device):
        p, c = softmax_statistics(logits, x.shape[1])
        index, dep = expectations(p, rel)
        yield {"index": index, "dep": dep, "conf": c, "prob": p}


def softmax_statistics(logits: Any, n: int) -> tuple[Any, Any]:
    """``softmax_N(logits)`` and ``1 − entropy / log N`` (clipped to [0, 1]), the same numbers
    as :func:`napari_gplws.models.gplws.depth_from_logits`, with fewer passes over the data."""
    import torch

    lg = logits.float()
    lg = lg - lg.amax(dim=1, keepdim=True)
    z = torch.exp(lg)
    total = z.sum(dim=1, keepdim=True)
    p = z.div_(total)
    entropy = torch.log(total[:, 0]) - (p * lg).sum(dim=1)
    conf = (1.0 - entropy / math.log(n)).clamp_(0.0, 1.0)
    return p, conf


def expectations(prob: Any, rel_positions: np.ndarray) -> tuple[Any, Any]:
    """Expected frame index and expected focus position (relative to the first) of
    ``prob`` ``(B, N, h, w)``, in one pass over the probabilities."""
    import torch

    n = prob.shape[1]
    w = torch.stack([torch.arange(n, dtype=torch.float32),
                     torch.as_tensor(rel_positions, dtype=torch.float32)]).to(prob.device)
    out = torch.einsum("kn,bnyx->bkyx", w, prob)
    return out[:, 0], out[:, 1]


def _plain_to_device(arr: np.ndarray, dev: str) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(arr)).to(dev)
