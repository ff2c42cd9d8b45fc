"""All-in-focus quality against the focus-stacking tools, on still and moving stacks.

Runs, side by side on the same simulated stacks (:func:`napari_gplws.sim.motion.moving_stack`:
one scene per height family, 16 frames of 320×320, each rendered still and with 4–6 %
focus breathing and 0.5–0.8 px/frame drift, the same noise draw for both):

* this project: classical engine (``sml``) with ``align`` off / auto (the default) / on,
  and GPLWS-Net with ``align="auto"`` (``--no-network`` leaves it out); both also with
  ``fusion="pyramid"`` (the Laplacian-pyramid blend) besides the default selection;
* focus-stack (``--focus-stack PATH`` or ``$FOCUS_STACK``; default
  ``/tmp/peers/focus-stack/build/focus-stack``), run as its users do (aligns every frame to
  the middle one, ``--nocrop --align-keep-size`` so its output keeps the frame geometry);
* focusweave (PyPI), ``FocusStackConfig(images=…, reference=N//2, keep_size=True)``.

A peer that is not installed is skipped with a line saying so. Reported: all-in-focus PSNR
(dB) against the simulator's ideal all-in-focus image (the noise-free texture, in the middle
frame's geometry), inside a 24-pixel inner margin that every frame of every scene covers;
this project's depth RMSE (µm) in the same area; and seconds per stack (wall clock, this
machine). The peers' depth maps are 8-bit, smoothed renderings and are not compared.

Run: ``.venv/bin/python benchmarks/bench_fusion.py [--write-docs] [--no-network]``;
``--write-docs`` replaces the section between the markers in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_gplws.api import reconstruct
from napari_gplws.sim.motion import moving_stack

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench_fusion:start -->", "<!-- bench_fusion:end -->"
MARGIN = 24
N_FRAMES, SIZE = 16, 320
#: (family, breathing, drift px/frame (x, y), colour)
SCENES = (
    ("plane", 0.05, (0.6, 0.3), False),
    ("terraces", -0.04, (-0.5, 0.5), False),
    ("pits", 0.06, (0.8, -0.2), True),
    ("caps", 0.04, (0.5, 0.5), False),
    ("waves", -0.05, (0.7, 0.0), True),
    ("smooth", 0.06, (-0.6, -0.4), False),
)


def _to_unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind in "ui":
        return a.astype(np.float64) / np.iinfo(a.dtype).max
    return a.astype(np.float64)


def psnr(aif: np.ndarray, ideal: np.ndarray) -> float:
    """PSNR (dB, peak 1) inside the inner margin; colour compared per channel."""
    a, b = _to_unit(aif), np.asarray(ideal, np.float64)
    if a.ndim == 3 and b.ndim == 2:
        a = a.mean(axis=-1)
    m = MARGIN
    err = np.mean((a[m:-m, m:-m] - b[m:-m, m:-m]) ** 2)
    return float(10 * np.log10(1.0 / max(err, 1e-12)))


def rmse(depth: np.ndarray, truth: np.ndarray) -> float:
    m = MARGIN
    return float(np.sqrt(np.mean((depth - truth)[m:-m, m:-m] ** 2)))


# ------------------------------------------------------------------------------ runners
def run_project(stack, method: str, align: str, fusion: str = "select"):
    t = time.perf_counter()
    r = reconstruct(stack, method=method, align=align, fusion=fusion, device="cpu")
    return r.aif, r.depth, time.perf_counter() - t, r.alignment


def focus_stack_path(given: str | None) -> str | None:
    cand = given or os.environ.get("FOCUS_STACK") or "/tmp/peers/focus-stack/build/focus-stack"
    found = shutil.which(cand) or (cand if Path(cand).is_file() else None)
    return found


def run_focus_stack(exe: str, frames: np.ndarray):
    import imageio.v3 as iio

    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for k, f in enumerate(frames):
            n = Path(tmp) / f"f{k:03d}.png"
            iio.imwrite(n, f)
            names.append(str(n))
        out = Path(tmp) / "out.png"
        t = time.perf_counter()
        subprocess.run(
            [exe, f"--output={out}", "--nocrop", "--align-keep-size", "--no-opencl", *names],
            check=True, capture_output=True, timeout=600,
        )
        secs = time.perf_counter() - t
        img = iio.imread(out)
    if img.ndim == 3 and img.shape[-1] == 4:
        img = img[..., :3]
    if frames.ndim == 3 and img.ndim == 3:  # grey in, grey out
        img = img.mean(axis=-1).astype(frames.dtype)
    return img, secs


def run_focusweave(frames: np.ndarray):
    import focusweave

    imgs = [np.ascontiguousarray(f) for f in frames]
    if frames.ndim == 3:
        imgs = [np.repeat(f[..., None], 3, axis=-1) for f in imgs]
    t = time.perf_counter()
    res = focusweave.run(
        focusweave.FocusStackConfig(images=imgs, reference=len(imgs) // 2, keep_size=True)
    )
    secs = time.perf_counter() - t
    img = np.asarray(res.image)
    if frames.ndim == 3 and img.ndim == 3:
        img = img.mean(axis=-1)
    if img.dtype.kind == "f" and img.max() > 1.5:  # a float image on the input's scale
        img = img / np.iinfo(frames.dtype).max
    return img, secs


def _label(method: str, align: str, fusion: str) -> str:
    return f"{method} align={align} {fusion}"


# ------------------------------------------------------------------------------ main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--no-network", action="store_true")
    ap.add_argument("--focus-stack", default=None)
    ap.add_argument("--scenes", type=int, default=len(SCENES))
    args = ap.parse_args()

    fs = focus_stack_path(args.focus_stack)
    try:
        import focusweave  # noqa: F401

        have_fw = True
    except ImportError:
        have_fw = False
    variants = [
        ("sml", "off", "select"), ("sml", "auto", "select"), ("sml", "on", "select"),
        ("sml", "auto", "pyramid"),
    ]
    if not args.no_network:
        variants += [("gplws", "auto", "select"), ("gplws", "auto", "pyramid")]
    notes = []
    if fs is None:
        notes.append("focus-stack: not found, skipped")
    if not have_fw:
        notes.append("focusweave: not installed, skipped")
    for n in notes:
        print(n, flush=True)

    cols = [_label(*v) for v in variants]
    if fs:
        cols.append("focus-stack")
    if have_fw:
        cols.append("focusweave")
    rows, depth_rows = [], []
    for i, (family, br, drift, rgb) in enumerate(SCENES[: args.scenes]):
        m = moving_stack(
            family=family, n_frames=N_FRAMES, shape=(SIZE, SIZE), breathing=br, drift_px=drift,
            rgb=rgb, seed=100 + i,
        )
        label = f"{family}{' RGB' if rgb else ''}"
        for kind, stack in (("still", m.still), (f"moving ({br:+.0%}, {drift} px)", m.stack)):
            cells, dcells = [], []
            for method, align, fusion in variants:
                aif, depth, secs, al = run_project(stack, method, align, fusion)
                did = "" if align != "auto" else (" A" if al is not None and al.aligned else "")
                cells.append(f"{psnr(aif, m.texture):.1f} / {secs:.2f}s{did}")
                dcells.append(f"{rmse(depth, m.depth_um):.2f}")
            if fs:
                try:
                    img, secs = run_focus_stack(fs, stack.frames)
                    cells.append(f"{psnr(img, m.texture):.1f} / {secs:.2f}s")
                except (subprocess.SubprocessError, OSError) as exc:
                    cells.append(f"failed ({type(exc).__name__})")
            if have_fw:
                img, secs = run_focusweave(stack.frames)
                cells.append(f"{psnr(img, m.texture):.1f} / {secs:.2f}s")
            rows.append((label, kind, cells))
            depth_rows.append((label, kind, dcells))
            print(f"{label:14s} {kind:32s} " + " | ".join(cells), flush=True)

    head = "| scene | frames | " + " | ".join(cols) + " |"
    sep = "|---|---|" + "---:|" * len(cols)
    table = [head, sep] + [f"| {a} | {b} | " + " | ".join(c) + " |" for a, b, c in rows]
    dhead = "| scene | frames | " + " | ".join(_label(*v) for v in variants) + " |"
    dsep = "|---|---|" + "---:|" * len(variants)
    dtable = [dhead, dsep] + [f"| {a} | {b} | " + " | ".join(c) + " |" for a, b, c in depth_rows]
    text = "\n".join(
        [
            START,
            "",
            (
                f"Measured with `.venv/bin/python benchmarks/bench_fusion.py --write-docs` on "
                f"{platform.machine()} ({os.cpu_count()} CPUs, shared), {N_FRAMES} frames of "
                f"{SIZE}×{SIZE} per stack. Each cell: all-in-focus PSNR in dB against the "
                "simulator's ideal image, inside a 24-pixel inner margin / seconds for the "
                "stack. `A`: `align=\"auto\"` decided to align. The defaults are `align=auto` and "
                "`pyramid` fusion; `select` takes each pixel from its in-focus frame."
            ),
            *(f"*{n}*" for n in notes),
            "",
            *table,
            "",
            "Depth RMSE (µm, same area) of this project:",
            "",
            *dtable,
            "",
            END,
        ]
    )
    print(text)
    if args.write_docs:
        doc = DOCS.read_text(encoding="utf-8")
        if START in doc and END in doc:
            a, b = doc.index(START), doc.index(END) + len(END)
            doc = doc[:a] + text + doc[b:]
        else:
            doc = doc.rstrip() + "\n\n## All-in-focus images against focus-stacking tools\n\n" + text + "\n"
        DOCS.write_text(doc, encoding="utf-8")
        print(f"wrote {DOCS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
