"""Measure autofocus calibration on simulated instruments: the table of docs/autofocus.md.

For one instrument of :data:`napari_gplws.sim.instrument.INSTRUMENTS` it renders
``--n-calib`` calibration z-stacks and ``--n-test`` other fields (test stacks), calibrates
the packaged LDSE-NET weights on the calibration stacks with ``gplws calibrate``'s code
(time-boxed, its own held-out stacks for model selection), then scores the packaged and the
calibrated weights on every tile of the test stacks against the simulator's true defocus:

* single-frame sign accuracy for |z| ≥ 1 µm;
* signed MAE for |z| ≤ 5 µm;
* magnitude MAE for |z| ≤ 5 µm.

Tile positions whose sharpest frame is blank are skipped, as calibration and autofocus do.
Everything goes to ``--out`` (stacks as .npz, checkpoint, log, weights, ``result.json``);
a second run with ``--resume`` continues an interrupted calibration.

Example (1 thread, 9.5 CPU-minutes; the table of docs/autofocus.md)::

    python scripts/calibration_table.py --instrument dry_into_mount --minutes 9.5 \
        --threads 1 --out runs/calib/dry
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from napari_gplws.defocus import MIN_CONTENT, content_fraction, cut_tiles, tile_origins
from napari_gplws.sim.instrument import INSTRUMENTS, instrument_simulator, instrument_stack
from napari_gplws.stack import FocalStack
from napari_gplws.training.calibrate import (
    CalibrationConfig,
    calibrate,
    held_out_metrics,
    predict_parts,
)


def make_stacks(inst: str, n: int, seed: int, folder: Path, size_px: int) -> list[dict]:
    """Render (or reload) ``n`` stacks of ``inst``; each as frames + positions + truth."""
    folder.mkdir(parents=True, exist_ok=True)
    sim = None
    out = []
    for k in range(n):
        f = folder / f"stack_{k:02d}.npz"
        if not f.is_file():
            sim = sim or instrument_simulator(inst)
            s = instrument_stack(sim, np.random.default_rng([seed, k]), size_px=size_px,
                                 descending=bool(k % 2))
            np.savez_compressed(f, frames=s.stack.frames, focus_um=s.stack.focus_um,
                                best=s.best_focus_um, px=s.stack.pixel_size_um)
        d = np.load(f)
        out.append({"frames": d["frames"], "focus_um": d["focus_um"], "best": float(d["best"]),
                    "px": float(d["px"]), "path": str(f)})
    return out


def test_tiles(
    stacks: list[dict], tile_px: int = 224, min_content: float = MIN_CONTENT
) -> tuple[np.ndarray, np.ndarray]:
    """Every non-blank tile of the test stacks with its true defocus."""
    tiles, labels = [], []
    for s in stacks:
        frames = s["frames"]
        origins = tile_origins(frames.shape[1:3], tile_px, tile_px)
        z = s["focus_um"] - s["best"]
        k0 = int(np.argmin(np.abs(z)))
        keep = content_fraction(cut_tiles(frames[k0], origins, tile_px)) >= min_content
        for k in range(len(frames)):
            t = cut_tiles(frames[k], origins, tile_px)[keep]
            tiles.append(t)
            labels.append(np.full(len(t), z[k], np.float32))
    return np.concatenate(tiles), np.concatenate(labels)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--instrument", choices=list(INSTRUMENTS), required=True)
    p.add_argument("--n-calib", type=int, default=16)
    p.add_argument("--n-test", type=int, default=8)
    p.add_argument("--size-px", type=int, default=448)
    p.add_argument("--minutes", type=float, default=9.5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                   help="calibration option, e.g. pair_weight=0 (repeatable)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    calib = make_stacks(args.instrument, args.n_calib, 1, out / "calib", args.size_px)
    test = make_stacks(args.instrument, args.n_test, 2, out / "test", args.size_px)
    cfg = CalibrationConfig(minutes=args.minutes, threads=args.threads, clock="cpu")
    for item in args.set:
        k, v = item.split("=", 1)
        cur = getattr(cfg, k)
        setattr(cfg, k, v.lower() in ("1", "true", "yes") if isinstance(cur, bool) else type(cur)(v))
    stacks = [FocalStack(s["frames"], focus_um=s["focus_um"], pixel_size_um=s["px"],
                         source=s["path"]) for s in calib]
    t0 = time.time()
    res = calibrate(stacks, out / "my_scope.safetensors", config=cfg, work_dir=out / "work",
                    resume=args.resume, optics_note=INSTRUMENTS[args.instrument].name,
                    command=" ".join(sys.argv), log=lambda m: print(m, flush=True))
    wall = time.time() - t0
    tt, tz = test_tiles(test, min_content=cfg.min_content)
    from napari_gplws.models.registry import load_ldse

    before = held_out_metrics(*predict_parts(load_ldse("ldse_default", "cpu"), tt), tz)
    after = (held_out_metrics(*predict_parts(load_ldse(res.output, "cpu"), tt), tz)
             if res.kept else before)
    result = {
        "instrument": args.instrument, "optics": INSTRUMENTS[args.instrument].to_dict(),
        "n_calib": args.n_calib, "n_test": args.n_test, "test_tiles": len(tz),
        "minutes_box": args.minutes, "threads": args.threads, "wall_min": round(wall / 60, 2),
        "cpu_min": res.card.get("cpu_time_min"), "steps": res.steps, "kept": res.kept,
        "options": cfg.to_dict(), "test_before": before, "test_after": after,
        "held_out_before": res.before, "held_out_after": res.after,
        "history": res.card.get("history"),
    }
    (out / "result.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("test_before", "test_after", "steps", "wall_min",
                                             "cpu_min")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
