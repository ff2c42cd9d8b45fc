"""The public Python API: one call from a stack to a height map and an all-in-focus image.

:func:`reconstruct` mirrors ``gplws reconstruct``. It accepts a :class:`FocalStack`, a
path, or a NumPy array, dispatches to the classical engine (:mod:`napari_gplws.dff.classical`) or the
network (:mod:`napari_gplws.dff.network`) and returns a :class:`Reconstruction` whose arrays carry
their unit in ``.units``. The maths lives in the core; this module only routes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws._shared.callbacks import CancelFn, ProgressFn
from napari_gplws.dff.align import ALIGN_MODELS, ALIGN_MODES, DEFAULT_MODEL, Alignment
from napari_gplws.dff.fusion import FUSION_MODES
from napari_gplws.dff.methods import (
    CLASSICAL_METHODS,
    METHODS,
    NETWORK_METHODS,
    default_method,
    resolve_method,
)
from napari_gplws.errors import GplwsError, StackError
from napari_gplws.stack import FocalStack

# The method registry lives in dff.methods; re-exported here as part of the public API.
__all__ = [
    "ALIGN_MODELS",
    "ALIGN_MODES",
    "CLASSICAL_METHODS",
    "METHODS",
    "NETWORK_METHODS",
    "OUTPUT_NAMES",
    "Reconstruction",
    "default_method",
    "reconstruct",
]


#: The files :meth:`Reconstruction.save` writes.
OUTPUT_NAMES: tuple[str, ...] = ("depth.tif", "aif.tif", "confidence.tif", "report.json")


@dataclass
class Reconstruction:
    """Result of :func:`reconstruct`.

    Attributes
    ----------
    depth : (H, W) float32
        Focus position of sharpest focus per pixel, in :attr:`units` (µm when the focus
        positions are known, else fractional 0-based frame index).
    aif : (H, W) or (H, W, 3)
        All-in-focus image, same dtype as the input frames.
    confidence : (H, W) float32 in [0, 1]
        How clearly each pixel's focus curve peaks (1 = unambiguous).
    units : str
        ``"µm"`` or ``"frame"``.
    method, device : str
        What computed it.
    timings : dict[str, float]
        Seconds per stage (``"read"``, ``"depth"``, …, ``"total"``).
    stack : FocalStack
        The input, for provenance (frames are not copied).
    alignment : Alignment or None
        What frame alignment measured and did (:class:`napari_gplws.dff.align.Alignment`:
        per-frame transforms, motion and residual motion in pixels, whether it aligned and
        why, the area every frame covers); ``None`` when ``align="off"``.
    aligned_stack : FocalStack or None
        The frames resampled into the reference frame's geometry, when they were aligned
        (``None`` otherwise). Same shape and dtype as the input; pixels outside a frame
        repeat its edge.
    crop : tuple of int or None
        ``(y0, y1, x0, x1)`` when the outputs were cropped to the common area.
    """

    depth: np.ndarray
    aif: np.ndarray
    confidence: np.ndarray
    units: str
    method: str
    device: str
    timings: dict[str, float] = field(default_factory=dict)
    stack: FocalStack | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    alignment: Alignment | None = None
    aligned_stack: FocalStack | None = None
    crop: tuple[int, int, int, int] | None = None

    def save(
        self,
        folder: str | os.PathLike,
        *,
        started_at: float | None = None,
        listed_folder: str | os.PathLike | None = None,
        extra_report: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write ``depth.tif``, ``aif.tif``, ``confidence.tif`` and ``report.json`` into ``folder``.

        The one writer of a reconstruction's files, used by ``gplws reconstruct``, ``gplws
        batch`` and scripts. Each file is replaced atomically; moving earlier results aside
        is the caller's choice (:func:`napari_gplws._shared.files.backup_outputs`). The depth
        map carries its unit and the pixel size in its TIFF metadata, so Fiji shows µm.

        Parameters
        ----------
        folder
            Output folder (created when missing).
        started_at
            ``time.perf_counter()`` when the whole job started; the report's total seconds
            then include reading and writing.
        listed_folder
            The folder the report should name as the outputs' home, when ``folder`` is a
            temporary one that will be moved there (batch does this).
        extra_report
            More keys for ``report.json``.

        Returns
        -------
        dict
            The report as written.
        """
        from napari_gplws._shared.files import atomic_write
        from napari_gplws.io import write_depth_tiff, write_image_tiff

        for name, arr in (("depth", self.depth), ("all-in-focus image", self.aif),
                          ("confidence", self.confidence)):
            a = np.asarray(arr)
            if a.dtype.kind == "f" and not np.isfinite(a.astype(np.float32, copy=False)).all():
                raise GplwsError(
                    f"The {name} of this reconstruction has NaN or infinite values; nothing was "
                    f"written to '{folder}'. Check the focus positions and the input frames."
                )
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        s = self.stack
        px = None if s is None else s.pixel_size_um
        meta = {"method": self.method, "source": None if s is None else s.source}
        t1 = time.perf_counter()
        write_depth_tiff(out / "depth.tif", self.depth, units=self.units, pixel_size_um=px, metadata=meta)
        write_image_tiff(out / "aif.tif", self.aif, pixel_size_um=px, metadata=meta)
        write_image_tiff(
            out / "confidence.tif", self.confidence.astype("float32"), pixel_size_um=px,
            metadata={**meta, "kind": "confidence", "range": [0, 1]},
        )
        self.timings["write"] = time.perf_counter() - t1
        if started_at is not None:
            self.timings["total"] = time.perf_counter() - started_at
        report = self.report()
        home = Path(listed_folder) if listed_folder is not None else out
        report["outputs"] = {n: str(home / n) for n in OUTPUT_NAMES}
        report.update(extra_report or {})
        text = json.dumps(report, indent=2, ensure_ascii=False)
        atomic_write(out / "report.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))
        return report

    def report(self) -> dict[str, Any]:
        """A JSON-able summary (what ``report.json`` holds)."""
        s = self.stack
        return {
            "method": self.method,
            "device": self.device,
            "parameters": self.parameters,
            "input": None
            if s is None
            else {
                "source": s.source,
                "shape": list(s.frames.shape),
                "dtype": str(s.frames.dtype),
                "focus_um": None if s.focus_um is None else [float(v) for v in s.focus_um],
                "pixel_size_um": s.pixel_size_um,
            },
            "units": {"depth": self.units, "pixel_size": "µm" if s and s.pixel_size_um else None},
            "depth_range": [float(np.nanmin(self.depth)), float(np.nanmax(self.depth))],
            "mean_confidence": float(np.mean(self.confidence)),
            "seconds": {k: round(float(v), 4) for k, v in self.timings.items()},
            "alignment": None if self.alignment is None else self.alignment.to_report(),
            "crop": None
            if self.crop is None
            else dict(zip(("y0", "y1", "x0", "x1"), (int(v) for v in self.crop))),
        }


def as_stack(
    stack_or_array: FocalStack | np.ndarray | str | os.PathLike,
    focus_positions: Sequence[float] | np.ndarray | None = None,
    pixel_size_um: float | None = None,
) -> FocalStack:
    """Coerce a stack, an array or a path into a :class:`FocalStack`.

    Explicit ``focus_positions`` (µm) and ``pixel_size_um`` override what the stack or
    file says.
    """
    if isinstance(stack_or_array, FocalStack):
        stack = stack_or_array
        changes: dict[str, Any] = {}
        if focus_positions is not None:
            changes["focus_um"] = focus_positions
        if pixel_size_um is not None:
            changes["pixel_size_um"] = pixel_size_um
        return stack.with_(**changes) if changes else stack
    if isinstance(stack_or_array, (str, os.PathLike)):
        from napari_gplws.io import read_stack

        return read_stack(stack_or_array, focus_um=focus_positions, pixel_size_um=pixel_size_um)
    if isinstance(stack_or_array, np.ndarray) or hasattr(stack_or_array, "__array__"):
        return FocalStack(
            np.asarray(stack_or_array), focus_um=focus_positions, pixel_size_um=pixel_size_um,
            source="array",
        )
    raise StackError(
        f"Cannot reconstruct from a {type(stack_or_array).__name__}; give a FocalStack, a NumPy "
        "array of shape (N, H, W[, 3]) or the path of a stack file or folder."
    )


def reconstruct(
    stack_or_array: FocalStack | np.ndarray | str | os.PathLike,
    focus_positions: Sequence[float] | np.ndarray | None = None,
    method: str | None = None,
    device: str = "auto",
    *,
    pixel_size_um: float | None = None,
    window: int = 9,
    refine: bool = True,
    tile_size: int | None = None,
    precision: str = "auto",
    compile: bool = False,
    tta: int | None = None,
    weights: str | os.PathLike = "gplws_default",
    align: str = "auto",
    align_model: str = DEFAULT_MODEL,
    reference: int | None = None,
    crop_common: bool = False,
    fusion: str = "pyramid",
    progress: ProgressFn = None,
    cancel: CancelFn = None,
) -> Reconstruction:
    """Reconstruct depth, all-in-focus image and confidence from a focus stack.

    Parameters
    ----------
    stack_or_array
        A :class:`FocalStack`, an ``(N, H, W[, 3])`` array, or a path to a stack.
    focus_positions
        ``(N,)`` focus positions in µm (override the stack's); ``None`` keeps the
        stack's, or frame-index units when it has none.
    method
        ``"gplws"`` (the network, default when its weights are installed) or a classical
        focus measure: ``"sml"``, ``"tenengrad"``, ``"glv"``, ``"lapvar"``, ``"rdf"``.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``. The classical
        engine always runs on the CPU.
    window
        Focus-measure window (pixels) for the classical methods.
    refine
        Edge-aware, confidence-weighted refinement of the classical depth map.
    tile_size
        Network tile size in pixels (``None``: chosen from the memory available).
    precision, compile
        Network only: ``"auto"`` (bf16/fp16 autocast on CUDA, fp32 elsewhere), ``"fp32"``,
        ``"fp16"`` or ``"bf16"``; ``compile=True`` runs it through ``torch.compile``
        (see :func:`~napari_gplws.dff.network.predict_depth`).
    tta
        Network only: average over 1, 2, 4 or 8 flipped/turned views (each view costs one
        more pass; a little more accurate); ``None``: 1 (``DEFAULT_TTA``).
    weights
        Network only: a packaged weights name (``"gplws_default"``) or a ``.safetensors``
        file of GPLWS-Net weights.
    align
        Frame alignment (:func:`napari_gplws.dff.align.align_stack`): ``"auto"`` (default)
        aligns the frames only when they really move (registering neighbouring frames makes
        them match better) and some pixel moves more than 0.3 px; a still stack is used as
        it is, bit for bit. ``"on"`` always aligns; ``"off"`` never measures. When aligned, the
        outputs are in the reference frame's geometry and pixels that not every frame
        covers get confidence 0.
    align_model
        ``"affine"`` (default; measured the most accurate even for pure breathing and drift),
        ``"shift+scale"``, ``"shift"`` or ``"shift+scale+rotation"``.
    reference
        Index (0-based) of the frame the others are aligned to; default the middle one
        (``N // 2``).
    crop_common
        Crop the outputs to the largest rectangle every aligned frame covers.
    fusion
        How the all-in-focus image is made: ``"pyramid"`` (default) blends the frames band
        by band (:func:`napari_gplws.dff.fusion.fuse_pyramid`): no seams where the depth is
        uncertain, and as sharp or sharper than selection on 10 of 12 simulated scenes
        (docs/benchmarks.md); ``"select"`` takes each pixel from the frame the depth map
        names, so the picture shows exactly where the depth found focus.
    progress, cancel
        ``progress(done, total)`` and ``cancel() -> bool`` callbacks.

    Returns
    -------
    Reconstruction

    Raises
    ------
    StackError
        Bad input (the message says what and how to fix it).
    Cancelled
        ``cancel()`` returned True; nothing partial is returned.

    Examples
    --------
    >>> from napari_gplws.sim.focus_stacks import synthetic_stack
    >>> s = synthetic_stack(shape=(64, 64), n_frames=10, seed=1)
    >>> r = reconstruct(s.stack, method="sml")
    >>> r.depth.shape, r.units
    ((64, 64), 'µm')
    """
    t0 = time.perf_counter()
    stack = as_stack(stack_or_array, focus_positions, pixel_size_um)
    t_read = time.perf_counter() - t0
    method = resolve_method(method)
    fusion = str(fusion).lower()
    if fusion not in FUSION_MODES:
        raise StackError(f"fusion={fusion!r} is not one of {', '.join(FUSION_MODES)}.")
    alignment: Alignment | None = None
    input_stack = stack
    if str(align).lower() != "off" or reference is not None:
        from napari_gplws.dff.align import align_stack

        stack, alignment = align_stack(
            stack, mode=align, model=align_model, reference=reference, cancel=cancel
        )
    elif str(align_model).lower() not in ALIGN_MODELS:
        raise StackError(f"align_model={align_model!r} is not one of {', '.join(ALIGN_MODELS)}.")
    if str(align).lower() not in ALIGN_MODES:  # pragma: no cover - align_stack checks first
        raise StackError(f"align={align!r} is not one of {', '.join(ALIGN_MODES)}.")

    blend = None
    if fusion == "pyramid":  # needs only the frames: runs beside the depth engine
        from napari_gplws.dff.fusion import BackgroundFusion

        blend = BackgroundFusion(stack.frames, cancel=cancel)
    try:
        if method in CLASSICAL_METHODS:
            from napari_gplws.dff.classical import depth_from_focus

            res = depth_from_focus(
                stack, measure=method, window=window, refine=refine, progress=progress, cancel=cancel
            )
            used_device = "cpu"
            params = {"window": window, "refine": refine}
        else:
            from napari_gplws.dff.network import predict_depth

            res = predict_depth(
                stack, device=device, weights=weights, tile_size=tile_size, precision=precision,
                compile=compile, tta=tta, progress=progress, cancel=cancel,
                aif_mode="none" if blend is not None else "attention",
            )
            used_device = str(getattr(res, "device", device))
            params = {k: res.params[k] for k in ("tile_size", "tile_batch", "precision", "compiled")}
            params["tta"] = res.params.get("tta", 1)
    except BaseException:
        if blend is not None:
            blend.stop()
        raise

    depth, aif, conf = res.depth, res.aif, res.confidence
    if blend is not None:
        aif = blend.result()
        res.timings["fusion"] = blend.seconds
    crop = None
    if alignment is not None and alignment.aligned:
        conf = np.where(alignment.coverage, conf, np.float32(0)).astype(np.float32)
    if crop_common and alignment is not None and alignment.aligned:
        y0, y1, x0, x1 = alignment.common_box
        crop = (y0, y1, x0, x1)
        depth, aif, conf = (np.ascontiguousarray(a[y0:y1, x0:x1]) for a in (depth, aif, conf))
    params["align"] = str(align).lower()
    if alignment is not None:
        params.update(align_model=alignment.model, reference_frame=alignment.reference)
    params["crop_common"] = bool(crop_common)
    params["fusion"] = fusion

    timings = {"read": t_read, **{k: float(v) for k, v in res.timings.items()}}
    if alignment is not None:
        timings["align"] = float(alignment.seconds.get("total", 0.0))
    timings["total"] = time.perf_counter() - t0
    return Reconstruction(
        depth=depth,
        aif=aif,
        confidence=conf,
        units=res.units,
        method=method,
        device=used_device,
        timings=timings,
        stack=input_stack,
        parameters=params,
        alignment=alignment,
        aligned_stack=stack if alignment is not None and alignment.aligned else None,
        crop=crop,
    )
