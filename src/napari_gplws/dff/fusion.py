"""Multi-scale (Laplacian-pyramid) all-in-focus fusion.

The default all-in-focus image takes each pixel from the frame the depth map says is in
focus (``fusion="select"``). Where the depth map is uncertain (weak texture, depth edges,
frames that were aligned to within a fraction of a pixel) that choice can flip between
neighbouring pixels and leave seams. ``fusion="pyramid"`` blends the frames band by band
instead:

1. every frame is split into a Laplacian pyramid (OpenCV ``pyrDown``/``pyrUp``; colour
   channels together);
2. at every level and pixel, each frame's weight is its local band energy (mean of the
   squared band-pass luminance over a 5×5 window, relative to the level's mean energy in the
   first frame) raised to the power ``sharpness / 2``, so the sharpest frame dominates but
   near-ties blend smoothly;
3. the weighted bands are summed and the pyramid is collapsed;
4. each pixel is clipped to the range its frames span there: a blend of band-pass images can
   overshoot next to a bright edge (a halo, or a specular highlight burnt to white), and no
   frame saw a value outside that range.

Frames are streamed: the weighted sums of one frame's pyramid are added to running totals,
so memory holds two pyramids, not the stack's. The output has the input's dtype and range.
Written here because neither scikit-image nor OpenCV ships a focus-weighted pyramid blend
(scikit-image has the pyramids, OpenCV's exposure fusion weighs by contrast, saturation and
exposure, not by band energy).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from napari_gplws._shared.callbacks import CancelFn, ProgressFn, check_cancel, report
from napari_gplws.errors import StackError

__all__ = ["FUSION_MODES", "SHARPNESS_RANGE", "BackgroundFusion", "fuse_pyramid", "pyramid_levels"]

#: ``"select"``: each pixel from its in-focus frame (depth-consistent); ``"pyramid"``: the
#: band-by-band blend of this module.
FUSION_MODES: tuple[str, ...] = ("select", "pyramid")
#: Allowed ``sharpness`` exponents (up to 16, the weights stay within float32's range).
SHARPNESS_RANGE = (1.0, 16.0)
#: The default exponent and energy window, chosen on the simulated scenes of
#: ``benchmarks/bench_fusion.py`` (window 3/5/7 × exponent 6–16, still and moving stacks).
DEFAULT_SHARPNESS = 10.0
_ENERGY_WINDOW = 5
#: Band energies are divided by the level's mean energy in the first frame (so the weights do
#: not depend on the images' overall scale) and clipped to this range: where every frame is
#: flat they are averaged, and ``(1e4) ** 8`` summed over many frames stays finite in float32.
_ENERGY_CLIP = (1e-4, 1e4)


def pyramid_levels(shape: tuple[int, int], coarsest: int = 8, most: int = 8) -> int:
    """Pyramid depth for frames of ``shape``: halve until the short side nears ``coarsest``."""
    short = max(1, min(shape))
    return int(max(1, min(most, np.floor(np.log2(short / coarsest)))))


def fuse_pyramid(
    frames: np.ndarray,
    *,
    sharpness: float = DEFAULT_SHARPNESS,
    levels: int | None = None,
    progress: ProgressFn = None,
    cancel: CancelFn = None,
) -> np.ndarray:
    """Blend ``(N, H, W)`` or ``(N, H, W, 3)`` frames band by band into one sharp image.

    Parameters
    ----------
    frames
        The (aligned) focus stack; any integer or float dtype.
    sharpness
        Exponent of the band energy in the weights (1–16; higher picks more decisively).
    levels
        Pyramid levels below the full resolution (default: :func:`pyramid_levels`).
    progress, cancel
        ``progress(done, total)`` per frame and ``cancel() -> bool``.

    Returns
    -------
    numpy.ndarray
        ``(H, W[, 3])``, the input's dtype, clipped to its range.
    """
    import cv2

    lo_s, hi_s = SHARPNESS_RANGE
    if not lo_s <= float(sharpness) <= hi_s:
        raise StackError(f"fusion sharpness must be {lo_s:g}–{hi_s:g}; got {sharpness}.")
    frames = np.asarray(frames)
    if frames.ndim not in (3, 4) or frames.shape[0] < 1:
        raise StackError(f"fuse_pyramid needs (N, H, W[, 3]) frames; got shape {frames.shape}.")
    n, h, w = frames.shape[:3]
    nlev = pyramid_levels((h, w)) if levels is None else int(levels)
    if not 1 <= nlev <= 12:
        raise StackError(f"pyramid levels must be 1–12; got {levels}.")
    kind = frames.dtype.kind
    scale = float(np.iinfo(frames.dtype).max) if kind in "ui" else 1.0
    power = np.float32(float(sharpness) / 2.0)
    num: list[np.ndarray] = []  # per level: sum of weight × band
    den: list[np.ndarray] = []  # per level: sum of weights
    norms: list[np.float32] = []
    lo = hi = None
    for k in range(n):
        check_cancel(cancel)
        img = frames[k].astype(np.float32) / np.float32(scale)
        lo = img.copy() if lo is None else np.minimum(lo, img, out=lo)
        hi = img.copy() if hi is None else np.maximum(hi, img, out=hi)
        bands = _laplacian_pyramid(img, nlev)
        for i, band in enumerate(bands):
            lum = band if band.ndim == 2 else band.mean(axis=-1)
            if i == nlev:  # the coarsest (low-pass) level: weigh by its local contrast
                lum = lum - cv2.blur(lum, (_ENERGY_WINDOW, _ENERGY_WINDOW))
            energy = cv2.blur(lum * lum, (_ENERGY_WINDOW, _ENERGY_WINDOW))
            if k == 0:
                mean = float(energy.mean())
                norms.append(np.float32(1.0 / mean if mean > 1e-30 else 1.0))
            energy *= norms[i]
            np.clip(energy, *_ENERGY_CLIP, out=energy)
            weight = _power(energy, power)
            contrib = weight[..., None] * band if band.ndim == 3 else weight * band
            if k == 0:
                num.append(contrib)
                den.append(weight)
            else:
                num[i] += contrib
                den[i] += weight
        report(progress, k + 1, n)
    out: np.ndarray | None = None
    for i in range(nlev, -1, -1):
        d = den[i] if num[i].ndim == 2 else den[i][..., None]
        level = num[i] / np.maximum(d, np.float32(np.finfo(np.float32).tiny))
        if out is None:
            out = level
        else:
            out = cv2.pyrUp(out, dstsize=(level.shape[1], level.shape[0])) + level
    assert out is not None
    np.clip(out, lo, hi, out=out)
    if kind in "ui":
        info = np.iinfo(frames.dtype)
        return np.clip(np.rint(out * np.float32(scale)), info.min, info.max).astype(frames.dtype)
    if kind == "f":
        lo, hi = float(np.nanmin(frames)), float(np.nanmax(frames))
        return np.clip(out, lo, hi).astype(frames.dtype)
    return out.astype(np.float32)


def _power(x: np.ndarray, p: np.float32) -> np.ndarray:
    """``x ** p``; by repeated squaring when ``p`` is a whole number (4× faster than pow)."""
    whole = int(p)
    if whole != p or whole < 1:
        return np.power(x, p, dtype=np.float32)
    out, base = None, x
    while whole:
        if whole & 1:
            out = base.copy() if out is None else out * base
        whole >>= 1
        if whole:
            base = base * base
    return out


def _laplacian_pyramid(img: np.ndarray, levels: int) -> list[np.ndarray]:
    """``levels`` band-pass images, finest first, then the low-pass remainder."""
    import cv2

    bands = []
    g = img
    for _ in range(levels):
        down = cv2.pyrDown(g)
        up = cv2.pyrUp(down, dstsize=(g.shape[1], g.shape[0]))
        bands.append(g - up)
        g = down
    bands.append(g)
    return bands


_BACKGROUND: ThreadPoolExecutor | None = None
_BACKGROUND_LOCK = threading.Lock()


class BackgroundFusion:
    """:func:`fuse_pyramid` of a stack in a background thread, started before the depth
    engine runs and collected after it: the blend only needs the frames, and OpenCV and
    PyTorch release the interpreter while they work, so the two overlap (on a small stack
    the engine's threads leave a core idle much of the time).

    ``result()`` returns the image (re-raising what the blend raised); ``stop()`` asks the
    blend to end at its next frame and waits for it, for when the engine failed or was
    cancelled; ``seconds`` is the blend's own time.
    """

    def __init__(self, frames: np.ndarray, cancel: CancelFn = None) -> None:
        global _BACKGROUND
        self._stop = threading.Event()
        self.seconds = 0.0

        def stopped() -> bool:
            return self._stop.is_set() or bool(cancel is not None and cancel())

        def run() -> np.ndarray:
            t0 = time.perf_counter()
            try:
                return fuse_pyramid(frames, cancel=stopped)
            finally:
                self.seconds = time.perf_counter() - t0

        with _BACKGROUND_LOCK:
            if _BACKGROUND is None:
                _BACKGROUND = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gplws-fusion")
            self._future: Future[np.ndarray] = _BACKGROUND.submit(run)

    def result(self) -> np.ndarray:
        return self._future.result()

    def stop(self) -> None:
        self._stop.set()
        try:
            self._future.result()
        except BaseException:  # noqa: BLE001 - the engine's error is the one to report
            pass
