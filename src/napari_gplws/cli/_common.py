"""What every ``gplws`` command shares: exit codes, the parser, limits on numeric options,
output-path checks, the progress bar, stack and GPU options.

Every numeric option is declared through :class:`Limits` (an argparse ``type=``): a value
outside its documented range is refused by the parser with one plain line naming the
option, its range and the fix, and exit code :data:`EXIT_USAGE`. The range is appended to
the option's ``--help`` text by :func:`with_limits`, and ``docs/cli.md`` lists them all.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from napari_gplws.errors import GplwsError

#: Exit codes: success; bad data, files or environment (message printed); the command line
#: itself is wrong (bad option value, conflicting flags; message printed); cancelled (Ctrl+C).
EXIT_CODES = EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


class UsageError(GplwsError):
    """The command line itself is wrong (bad or conflicting options): exit code 2."""


class GplwsParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one plain line and exit code :data:`EXIT_USAGE`."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if message.startswith("argument ") and ": must be " in message:
            message = message[len("argument "):].replace(": must be ", " must be ", 1)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message.rstrip('.')}. See `{self.prog} --help`.\n")


def _fmt(v: float) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e16:
        return str(int(v))
    return f"{v:g}" if isinstance(v, float) else str(v)


class Limits:
    """An argparse ``type=`` for a number within a documented range.

    Parameters
    ----------
    kind
        ``int`` (whole numbers) or ``float`` (finite numbers; NaN and infinity are refused).
    lo, hi
        Inclusive bounds (``None``: unbounded on that side).
    lo_open
        Refuse ``lo`` itself (``> lo`` instead of ``≥ lo``).
    nonzero
        Refuse 0 (for signed steps).
    odd
        Refuse even numbers (window sizes).
    unit
        Unit shown after the range (``"px"``, ``"µm"``, ``"min"``…).
    """

    def __init__(
        self,
        kind: type = int,
        lo: float | None = None,
        hi: float | None = None,
        *,
        lo_open: bool = False,
        nonzero: bool = False,
        odd: bool = False,
        unit: str = "",
    ) -> None:
        self.kind, self.lo, self.hi, self.lo_open = kind, lo, hi, lo_open
        self.nonzero, self.odd, self.unit = nonzero, odd, unit
        self.__name__ = "whole number" if kind is int else "number"

    @property
    def text(self) -> str:
        """The range in words, e.g. ``"1…4096 px"``, ``"> 0 and ≤ 10000 µm"``, ``"≥ 0"``."""
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None:
            r = f"> {_fmt(lo)} and ≤ {_fmt(hi)}" if self.lo_open else f"{_fmt(lo)}…{_fmt(hi)}"
        elif lo is not None:
            r = f"{'>' if self.lo_open else '≥'} {_fmt(lo)}"
        elif hi is not None:
            r = f"≤ {_fmt(hi)}"
        else:
            r = "any"
        r = f"{r} {self.unit}".strip()
        if self.nonzero:
            r += ", not 0"
        if self.odd:
            r += ", odd"
        return r

    def __call__(self, text: str) -> int | float:
        what = "a whole number" if self.kind is int else "a number"
        try:
            value = self.kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {what} ({self.text}); got '{text}'") from None
        bad = isinstance(value, float) and not math.isfinite(value)
        bad = bad or (self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo))
        bad = bad or (self.hi is not None and value > self.hi) or (self.nonzero and value == 0)
        bad = bad or (self.odd and value % 2 == 0)
        if bad:
            raise argparse.ArgumentTypeError(
                f"must be {what} in the range {self.text}; got '{text}'. Give a value in that range"
            )
        return value


def with_limits(help_text: str | None, limits: Limits) -> str:
    """``help_text`` followed by the option's range, as shown by ``--help``."""
    rng = f"[range: {limits.text}]".replace("%", "%%")
    return f"{help_text} {rng}" if help_text else rng


def add_number(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    *flags: str,
    limits: Limits,
    help: str | None = None,
    **kwargs: object,
) -> argparse.Action:
    """``p.add_argument(*flags, type=limits, help=help + range, **kwargs)``."""
    return p.add_argument(*flags, type=limits, help=with_limits(help, limits), **kwargs)  # type: ignore[arg-type]


def numeric_options(parser: argparse.ArgumentParser, prefix: str = "") -> list[tuple[str, str, Limits]]:
    """Every numeric option of ``parser`` and its sub-commands: ``(command, flags, limits)``."""
    found: list[tuple[str, str, Limits]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += numeric_options(sub, f"{prefix} {name}".strip())
        elif isinstance(action.type, Limits):
            found.append((prefix, "/".join(action.option_strings) or action.dest, action.type))
    return found


# --- limits shared by several commands ------------------------------------------------------
#: Focus step between frames (may be negative: positions then decrease).
FOCUS_STEP = Limits(float, -1e5, 1e5, nonzero=True, unit="µm")
#: Focus position of frame 0.
FOCUS_START = Limits(float, -1e6, 1e6, unit="µm")
#: Lateral pixel size.
PIXEL_SIZE = Limits(float, 0, 1e4, lo_open=True, unit="µm")
#: Focus-measure window of the classical methods (odd; checked by the method).
WINDOW = Limits(int, 1, 255, odd=True, unit="px")
#: Tile side of the network.
TILE_SIZE = Limits(int, 32, 8192, unit="px")
#: Chunk side out of core.
CHUNK = Limits(int, 16, 65536, unit="px")
#: Threads of one process.
THREADS = Limits(int, 1, 1024)
#: Views of test-time augmentation (also restricted to the choices 1, 2, 4, 8).
TTA = Limits(int, 1, 8)


# --- output paths ---------------------------------------------------------------------------
def _nearest_existing(p: Path) -> Path:
    q = p.absolute()
    while not q.exists() and q != q.parent:
        q = q.parent
    return q


def _probe_writable(folder: Path, option: str, target: Path) -> None:
    """Raise unless a file can be created in ``folder`` (a real probe: works for root too)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".gplws-probe-", dir=folder)
    except OSError as exc:
        raise GplwsError(
            f"{option} '{target}': cannot write into '{folder}' ({exc.strerror or exc}). "
            "Choose a folder you can write to, or fix its permissions."
        ) from None
    os.close(fd)
    os.unlink(name)


def check_output_folder(path: str | os.PathLike[str], option: str = "-o/--output") -> Path:
    """Refuse an output folder that is an existing file or cannot be written; return it.

    Nothing is created: the folder's nearest existing parent is probed instead.

    Raises
    ------
    GplwsError
        The path is an existing file (or lies below one), or the folder is not writable.
    """
    p = Path(os.fspath(path))
    if p.exists() and not p.is_dir():
        raise GplwsError(
            f"{option} '{p}' is an existing file, not a folder. Give a folder name (it is "
            "created when missing)."
        )
    base = _nearest_existing(p)
    if not base.is_dir():
        raise GplwsError(
            f"{option} '{p}' cannot be created: '{base}' is a file, not a folder. Give another "
            "folder name."
        )
    _probe_writable(base, option, p)
    return p


def check_output_file(
    path: str | os.PathLike[str], option: str, *, create_parent: bool = False
) -> Path:
    """Refuse an output file that is an existing folder or whose folder cannot be written.

    With ``create_parent`` a missing folder is fine when it can be created (the command
    creates it); otherwise it must exist.

    Raises
    ------
    GplwsError
        The path is a folder, its folder is missing (without ``create_parent``) or lies
        below a file, or it is not writable.
    """
    p = Path(os.fspath(path))
    if p.is_dir():
        raise GplwsError(f"{option} '{p}' is a folder; give a file name.")
    parent = p.absolute().parent
    if not parent.is_dir() and not create_parent:
        raise GplwsError(
            f"{option} '{p}': the folder '{parent}' does not exist; create it first or give "
            "another path."
        )
    base = _nearest_existing(parent)
    if not base.is_dir():
        raise GplwsError(f"{option} '{p}' cannot be created: '{base}' is a file, not a folder.")
    _probe_writable(base, option, p)
    return p


def check_device_text(text: str) -> str:
    """argparse ``type=`` for ``--device``: auto, cpu, cuda, cuda:N or mps (availability is
    checked when the device is used)."""
    d = text.strip().lower()
    ok = d in ("auto", "cpu", "cuda", "mps") or (
        d.startswith("cuda:") and d[5:].isdigit() and int(d[5:]) < 64
    )
    if not ok:
        raise argparse.ArgumentTypeError(
            f"must be one of auto, cpu, cuda, cuda:N (N = 0…63) or mps; got '{text}'"
        )
    return d


def check_method_text(text: str) -> str:
    """argparse ``type=`` for ``--method``: a known depth-from-focus method."""
    from napari_gplws.dff.methods import resolve_method

    try:
        resolve_method(text)
    except GplwsError as exc:
        raise argparse.ArgumentTypeError(str(exc).rstrip(".")) from None
    return text



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
        raise UsageError(
            f"--focus-positions must be a comma-separated list of numbers in µm; got '{text}'."
        ) from None


def check_positions_text(text: str) -> str:
    """argparse ``type=`` for ``--focus-positions``: numbers in µm, each within ±10⁶ µm."""
    try:
        values = _parse_positions(text)
    except UsageError:
        raise argparse.ArgumentTypeError(
            f"must be a comma-separated list of numbers in µm ({FOCUS_START.text} each); got '{text}'"
        ) from None
    if not values or not all(math.isfinite(v) and abs(v) <= 1e6 for v in values):
        raise argparse.ArgumentTypeError(
            f"must be a comma-separated list of numbers in µm ({FOCUS_START.text} each); got '{text}'"
        )
    return text


def check_axis_pick_text(text: str) -> str:
    """argparse ``type=`` for ``--axis-pick``: ``AXIS=INDEX`` items (index 0…10⁶)."""
    import re

    parts = [t.strip() for t in text.replace(";", ",").split(",") if t.strip()]
    for part in parts or [text]:
        m = re.fullmatch(r"([A-Za-z]|\d+)\s*[=:]\s*(\d+)", part)
        if not m or int(m.group(2)) > 1_000_000:
            raise argparse.ArgumentTypeError(
                f"must look like AXIS=INDEX with INDEX 0…1000000, e.g. T=0 (time point 0) or C=1 "
                f"(channel 1); got '{part}'"
            )
    return text


def _add_stack_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("focus positions and pixel size (override file metadata and sidecars)")
    add_number(g, "--focus-step", limits=FOCUS_STEP, metavar="UM",
               help="focus step between frames in µm (negative: positions decrease)")
    add_number(g, "--focus-start", limits=FOCUS_START, metavar="UM",
               help="focus position of frame 0 in µm (default 0)")
    g.add_argument("--focus-positions", type=check_positions_text, metavar="UM,UM,...",
                   help=f"one focus position per frame in µm [range: {FOCUS_START.text} each]")
    add_number(g, "--pixel-size", limits=PIXEL_SIZE, metavar="UM", help="lateral pixel size in µm")
    g.add_argument(
        "--axis-pick", action="append", type=check_axis_pick_text, metavar="AXIS=INDEX",
        help="for 4D/5D files, the index to keep on a time or channel axis (repeatable), e.g. T=0",
    )


def check_pattern_text(text: str) -> str:
    """argparse ``type=`` for ``--pattern``: a file-name pattern such as ``'im_*.bmp'``."""
    if not text.strip() or "/" in text or "\\" in text or len(text) > 255:
        raise argparse.ArgumentTypeError(
            f"must be a file-name pattern such as 'im_*.bmp' (no folder part, at most 255 "
            f"characters); got '{text}'"
        )
    return text


def add_pattern_option(p: argparse.ArgumentParser) -> None:
    """``--pattern``: which files of a folder are the frames."""
    p.add_argument(
        "--pattern", type=check_pattern_text, default=None, metavar="GLOB",
        help="for a folder of frames: the frames' file-name pattern, quoted, e.g. 'im_*.bmp' "
             "(default: the folder's majority format; the files left out are named)",
    )


def _read_input(args: argparse.Namespace):
    import warnings

    from napari_gplws.io import parse_axis_pick, read_stack

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the files left out are printed below
        stack = read_stack(
            args.input,
            focus_um=_parse_positions(args.focus_positions),
            focus_start_um=args.focus_start,
            focus_step_um=args.focus_step,
            pixel_size_um=args.pixel_size,
            axis_pick=parse_axis_pick(args.axis_pick) or None,
            pattern=getattr(args, "pattern", None),
        )
    left = stack.metadata.get("left_out") or []
    if left:  # printed even with -q: it says what was (not) reconstructed
        shown = ", ".join(left[:8]) + (" …" if len(left) > 8 else "")
        print(
            f"Read {stack.n_frames} frames; other files in the folder, not read: {shown}",
            file=sys.stderr,
        )
    return stack


def add_gpu_options(p: argparse.ArgumentParser) -> None:
    """``--precision`` and ``--compile``: how the network runs (mostly for GPUs)."""
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                   help="network arithmetic: auto = bf16/fp16 autocast on CUDA, fp32 elsewhere")
    p.add_argument("--compile", action="store_true",
                   help="run the network through torch.compile (pays off over many stacks of one size)")
    p.add_argument("--tta", type=TTA, default=None, choices=(1, 2, 4, 8),
                   help="average the network over this many flipped/turned views (default 1; each "
                        "view costs one more pass of the network and lowers the error a little)")


def add_align_options(p: argparse.ArgumentParser) -> None:
    """``--align``, ``--align-model``, ``--reference``, ``--crop-common``: frame alignment."""
    from napari_gplws.dff.align import ALIGN_MODELS, ALIGN_MODES, AUTO_THRESHOLD_PX

    g = p.add_argument_group("frame alignment (focus breathing, drift) and fusion")
    g.add_argument("--align", default=None, choices=ALIGN_MODES,
                   help=f"auto (default): align only frames that really move, by more than "
                        f"{AUTO_THRESHOLD_PX} px somewhere, and leave still stacks as they are; "
                        "on: always; off: never. Out of core (zarr, --out-of-core) frames are "
                        "not aligned")
    g.add_argument("--align-model", default="affine", choices=ALIGN_MODELS,
                   help="transform per frame (default affine: measured the most accurate, also "
                        "for pure breathing and drift)")
    add_number(g, "--reference", limits=Limits(int, 0, 1_000_000), default=None, metavar="K",
               help="index (0 = first) of the frame the others are aligned to; results are "
                    "in its geometry (default: the middle frame, N//2; below the number of frames)")
    g.add_argument("--crop-common", action="store_true",
                   help="crop the outputs to the largest rectangle every aligned frame covers")
    g.add_argument("--fusion", default=None, choices=("pyramid", "select"),
                   help="all-in-focus image: pyramid (default) blends the frames band by band "
                        "(no seams, sharpest); select takes each pixel from the frame the depth "
                        "map names. Out of core the image is always made by selection")
