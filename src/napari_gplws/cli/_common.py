"""What every ``gplws`` command shares: exit codes, the progress bar, stack and GPU options.
"""

from __future__ import annotations

import argparse
import sys
import time

#: Exit codes: success, an error a person can fix (message printed), cancelled (Ctrl+C).
EXIT_CODES = EXIT_OK, EXIT_ERROR, EXIT_CANCELLED = 0, 2, 130


class _Progress:
    """A tqdm bar that only appears for work longer than about a second."""

    def __init__(self, desc: str, enabled: bool = True) -> None:
        self.desc, self.enabled, self.bar, self.t0 = desc, enabled, None, time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            if time.perf_counter() - self.t0 < 1.0 and done < total:
                return
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit="step", leave=False, file=sys.stderr)
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _parse_positions(text: str | None):
    if text is None:
        return None
    try:
        return [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        from napari_gplws.errors import GplwsError

        raise GplwsError(
            f"--focus-positions must be a comma-separated list of numbers in µm; got '{text}'."
        ) from None


def _add_stack_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("focus positions and pixel size (override file metadata and sidecars)")
    g.add_argument("--focus-step", type=float, metavar="UM", help="focus step between frames in µm")
    g.add_argument("--focus-start", type=float, metavar="UM", help="focus position of frame 0 in µm (default 0)")
    g.add_argument("--focus-positions", metavar="UM,UM,...", help="one focus position per frame in µm")
    g.add_argument("--pixel-size", type=float, metavar="UM", help="lateral pixel size in µm")
    g.add_argument(
        "--axis-pick", action="append", metavar="AXIS=INDEX",
        help="for 4D/5D files, the index to keep on a time or channel axis (repeatable), e.g. T=0",
    )


def _read_input(args: argparse.Namespace):
    from napari_gplws.io import parse_axis_pick, read_stack

    return read_stack(
        args.input,
        focus_um=_parse_positions(args.focus_positions),
        focus_start_um=args.focus_start,
        focus_step_um=args.focus_step,
        pixel_size_um=args.pixel_size,
        axis_pick=parse_axis_pick(args.axis_pick) or None,
    )


def add_gpu_options(p: argparse.ArgumentParser) -> None:
    """``--precision`` and ``--compile``: how the network runs (mostly for GPUs)."""
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                   help="network arithmetic: auto = bf16/fp16 autocast on CUDA, fp32 elsewhere")
    p.add_argument("--compile", action="store_true",
                   help="run the network through torch.compile (pays off over many stacks of one size)")
    p.add_argument("--tta", type=int, default=None, choices=(1, 2, 4, 8),
                   help="average the network over this many flipped/turned views (default 2; 1 is "
                        "twice as fast and about 3 %% less accurate)")
