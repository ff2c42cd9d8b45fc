"""Bad input of every kind: one plain line naming the argument or file, never a traceback.

Each case is one parametrised test. Command-line cases run in process through
``cli.main.main`` (fast) and, for a representative subset that includes the cases that
used to hang or print a traceback, as a real ``python -m napari_gplws.cli`` process with a
timeout (a hang fails). API cases run in process and expect a ``GplwsError`` subclass.
Exit codes: 2 for a wrong command line, 1 for bad data, files or environment.
The small inputs (a stack, an image, damaged files and damaged weights) are built once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from napari_gplws.cli._common import EXIT_ERROR, EXIT_USAGE
from napari_gplws.cli.main import main
from napari_gplws.errors import GplwsError, ModelError, StackError

WEIGHTS = Path(__file__).resolve().parents[2] / "src" / "napari_gplws" / "weights"
SUBPROCESS_TIMEOUT_S = 120


# --------------------------------------------------------------------------------------------
# Inputs, built once
# --------------------------------------------------------------------------------------------
def _frame() -> np.ndarray:
    """A 240×240 textured frame (smoothed noise): every tile counts as specimen."""
    from scipy import ndimage as ndi

    a = ndi.gaussian_filter(np.random.default_rng(0).random((240, 240)), 3.0)
    return (255 * (a - a.min()) / (a.max() - a.min())).astype(np.uint8)


def _damaged_weights(root: Path, name: str) -> dict[str, Path]:
    """Every kind of damaged copy of the packaged ``name`` weights, by kind."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    src = WEIGHTS / f"{name}.safetensors"
    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata() or {})
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iteration
    d = root / name
    d.mkdir(parents=True)
    first_float = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    out: dict[str, Path] = {}

    def save(kind: str, st: dict, md: dict | None = None) -> None:
        out[kind] = d / f"{kind}.safetensors"
        save_file(st, str(out[kind]), metadata=meta if md is None else md)

    raw = src.read_bytes()
    out["empty"] = d / "empty.safetensors"
    out["empty"].write_bytes(b"")
    out["truncated"] = d / "truncated.safetensors"
    out["truncated"].write_bytes(raw[: len(raw) // 2])
    out["random"] = d / "random.safetensors"
    out["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    shape = dict(state)
    shape[first_float] = torch.zeros(tuple(s + 1 for s in state[first_float].shape))
    save("wrong_shape", shape)
    save("wrong_dtype", {k: (v.double() if v.is_floating_point() else v) for k, v in state.items()})
    save("int_dtype", {k: (v.to(torch.int32) if v.is_floating_point() else v) for k, v in state.items()})
    save("missing_keys", {k: v for k, v in state.items() if k != first_float})
    save("extra_keys", {**state, "surplus.weight": torch.zeros(3)})
    nan = dict(state)
    nan[first_float] = state[first_float].clone().fill_(float("nan"))
    save("nan", nan)
    inf = dict(state)
    inf[first_float] = state[first_float].clone()
    inf[first_float].view(-1)[0] = float("inf")
    save("inf", inf)
    save("broken_config", state, {**meta, "config": '{"widths": [16, 24'})
    save("wrong_format", state, {**meta, "format": "other/9"})
    # a folder whose config.json is broken (the file holds no config of its own)
    folder = d / "folder_broken_config"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": meta["format"]})
    (folder / "config.json").write_text('{"stem": 24,', encoding="utf-8")
    out["folder_broken_config"] = folder
    # an intact file whose model card (JSON beside it) is broken
    card = d / "card" / "w.safetensors"
    card.parent.mkdir()
    save_file(state, str(card), metadata=meta)
    card.with_suffix(".json").write_text("{not json", encoding="utf-8")
    out["broken_card"] = card
    empty_dir = d / "no_weights_here"
    empty_dir.mkdir()
    out["empty_folder"] = empty_dir
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Small good and bad inputs shared by every case."""
    import tifffile

    from napari_gplws.io import save_stack
    from napari_gplws.sim.focus_stacks import synthetic_stack

    root = tmp_path_factory.mktemp("bad_input")
    f: dict[str, Path] = {"root": root}
    st = synthetic_stack(family="waves", n_frames=6, shape=(48, 48), seed=3).stack
    f["stack"] = root / "stack.tif"
    save_stack(f["stack"], st)
    f["image"] = root / "image.tif"
    tifffile.imwrite(f["image"], _frame())
    f["file"] = root / "existing.txt"
    f["file"].write_text("a user's file\n", encoding="utf-8")
    f["empty_tif"] = root / "empty.tif"
    f["empty_tif"].write_bytes(b"")
    f["random_tif"] = root / "random.tif"
    f["random_tif"].write_bytes(np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    big = synthetic_stack(family="waves", n_frames=6, shape=(128, 128), seed=4).stack
    save_stack(root / "big.tif", big)
    raw = (root / "big.tif").read_bytes()
    f["truncated_tif"] = root / "truncated.tif"
    f["truncated_tif"].write_bytes(raw[: len(raw) // 3])
    f["one_frame"] = root / "one.npy"
    np.save(f["one_frame"], np.zeros((1, 16, 16), np.uint8))
    f["nan_stack"] = root / "nan.npy"
    a = np.random.default_rng(5).random((4, 16, 16)).astype(np.float32)
    a[1, 3, 3] = np.nan
    np.save(f["nan_stack"], a)
    f["empty_dir"] = root / "empty_dir"
    f["empty_dir"].mkdir()
    f["loop"] = root / "loop.tif"
    os.symlink(f["loop"], f["loop"])  # a symlink that points at itself
    f["missing"] = root / "no_such_stack.tif"
    for name in ("ldse_default", "gplws_default"):
        for kind, p in _damaged_weights(root / "weights", name).items():
            f[f"{name.split('_')[0]}:{kind}"] = p
    return f


def _readonly_folder(files: dict[str, Path]) -> Path:
    """A folder nobody may write into: a chmod 555 folder, or (as root) a kernel folder."""
    if os.geteuid() != 0:
        p = files["root"] / "readonly"
        p.mkdir(exist_ok=True)
        p.chmod(0o555)
        return p
    for cand in (Path("/sys/kernel"), Path("/proc/sys")):
        if cand.is_dir():
            try:
                (cand / ".gplws-probe").touch()
            except OSError:
                return cand
    pytest.skip("no read-only folder on this machine")


def _fill(template: list[str], files: dict[str, Path], tmp_path: Path) -> list[str]:
    """Replace ``{name}`` in the arguments by the input's path; ``{out}`` is a fresh folder."""
    import re

    def path(m: re.Match) -> str:
        key = m.group(1)
        if key == "out":
            return str(tmp_path / "out")
        if key == "readonly":
            return str(_readonly_folder(files) / "out")
        if key == "readonly_itself":
            return str(_readonly_folder(files))
        return str(files[key])

    return [re.sub(r"\{([a-z_]+(?::[a-z_]+)?)\}", path, t) for t in template]


def _check_message(code: int, err: str, expected: int, names: list[str]) -> None:
    assert "Traceback" not in err, err
    assert code == expected, err
    lines = [ln for ln in err.splitlines() if ": error:" in ln]
    assert len(lines) == 1, err  # one plain line
    for name in names:
        assert name in lines[0], (name, err)


# --------------------------------------------------------------------------------------------
# Command line: option values outside their range (exit code 2)
# --------------------------------------------------------------------------------------------
_BASE = {
    "reconstruct": ["reconstruct", "{stack}", "-o", "{out}", "-q"],
    "autofocus": ["autofocus", "{image}", "-q"],
    "batch": ["batch", "{stack}", "-o", "{out}", "-q"],
    "eval": ["eval", "--synthetic", "1", "-q"],
    "bench": ["bench", "--sizes", "4x32x32"],
    "train gplws": ["train", "gplws"],
    "train ldse": ["train", "ldse"],
}
_BAD_VALUES = {
    "reconstruct": {
        "--tile-size": ["0", "-64", "16", "100000", "1.5", "abc"],
        "--window": ["0", "4", "-3", "257"],
        "--chunk": ["0", "8", "-1", "1000000"],
        "--threads": ["0", "-2", "5000"],
        "--focus-step": ["0", "1e300", "nan", "inf", "-1e6", "abc"],
        "--focus-start": ["1e7", "nan", "-inf"],
        "--pixel-size": ["0", "-0.5", "nan", "1e5"],
        "--focus-positions": ["1,2,x", "nan,1,2", "1e300,2"],
        "--axis-pick": ["T", "T=x", "=3"],
        "--tta": ["0", "3", "16"],
        "--method": ["magic"],
        "--device": ["gpu", "cuda:x"],
    },
    "autofocus": {
        "--stride": ["0", "-224", "8", "5000", "22.5"],
        "--min-content": ["5", "-0.1", "1.5", "nan"],
        "--frame": ["-5", "x"],
        "--grid": ["0x3", "3x0", "3", "axb", "100x100"],
        "--focus-step": ["1e300", "0"],
        "--pixel-size": ["0"],
        "--device": ["bogus"],
    },
    "batch": {
        "--workers": ["0", "-1", "1000", "x"],
        "--threads-per-worker": ["0", "-1"],
        "--window": ["2"],
        "--tile-size": ["0"],
        "--chunk": ["0"],
        "--pixel-size": ["-1"],
        "--tta": ["3"],
        "--device": ["xpu"],
    },
    "eval": {"--synthetic": ["0", "-1"], "--gt-scale": ["0", "nan"], "--device": ["bad"]},
    "bench": {"--repeats": ["0", "1000"], "--tta": ["5"]},
    "train gplws": {
        "--steps": ["0"], "--batch-size": ["0"], "--lr": ["0", "2", "nan"],
        "--synth-fraction": ["1.5"], "--threads": ["-1"], "--max-minutes": ["0"], "--seed": ["-1"],
    },
    "train ldse": {
        "--batch-size": ["0"], "--crop-px": ["8"], "--p-phase": ["2"], "--full-fraction": ["-0.1"],
        "--real-fraction": ["2"], "--n-aberrations": ["0"], "--stack-focus-step": ["0"],
    },
}
RANGE_CASES = [
    pytest.param(cmd, opt, val, id=f"{cmd.replace(' ', '-')}{opt}={val}")
    for cmd, options in _BAD_VALUES.items()
    for opt, values in options.items()
    for val in values
]


def _run_in_process(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # the trainers' own parsers exit
        code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
    captured = capsys.readouterr()
    return code, captured.err + captured.out


@pytest.mark.parametrize(("command", "option", "value"), RANGE_CASES)
def test_option_out_of_range_is_a_usage_error(command, option, value, files, tmp_path, capsys):
    argv = _fill(_BASE[command], files, tmp_path) + [option, value]
    code, err = _run_in_process(argv, capsys)
    _check_message(code, err, EXIT_USAGE, [option])
    assert "--help" in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_every_numeric_option_has_a_range_in_help_and_docs():
    from napari_gplws.cli._common import GplwsParser, numeric_options
    from napari_gplws.cli.main import build_parser
    from napari_gplws.cli.train import build_gplws_parser, build_ldse_parser

    found = numeric_options(build_parser())
    found += numeric_options(build_gplws_parser(), "train gplws")
    found += numeric_options(build_ldse_parser(), "train ldse")
    assert len(found) > 60
    docs = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    limits = docs[docs.index("## Limits on options"):]
    for command, flags, lim in found:
        assert f"`{flags.split('/')[-1]}`" in limits, (command, flags)
        assert lim.text in limits, (command, flags, lim.text)

    def untyped(p: GplwsParser) -> list[str]:  # a numeric option declared without a range
        import argparse

        out = []
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub in a.choices.values():
                    out += untyped(sub)
            elif a.type in (int, float):
                out.append("/".join(a.option_strings))
        return out

    assert untyped(build_parser()) + untyped(build_gplws_parser()) + untyped(build_ldse_parser()) == []


# --------------------------------------------------------------------------------------------
# Command line: bad data, files and environment (exit code 1) and wrong combinations (2)
# --------------------------------------------------------------------------------------------
DATA_CASES = [
    # (id, argv, exit code, words the one error line must hold)
    ("output-is-a-file", ["reconstruct", "{stack}", "-o", "{file}", "--method", "sml", "-q"], 1, ["existing.txt", "file"]),
    ("output-below-a-file", ["reconstruct", "{stack}", "-o", "{file}/sub", "--method", "sml", "-q"], 1, ["existing.txt"]),
    ("output-read-only", ["reconstruct", "{stack}", "-o", "{readonly}", "--method", "sml", "-q"], 1, ["cannot write"]),
    ("output-read-only-itself", ["reconstruct", "{stack}", "-o", "{readonly_itself}", "--method", "sml", "-q"], 1, ["cannot write"]),
    ("input-missing", ["reconstruct", "{missing}", "-o", "{out}", "-q"], 1, ["no_such_stack.tif"]),
    ("input-empty-file", ["reconstruct", "{empty_tif}", "-o", "{out}", "-q"], 1, ["empty.tif"]),
    ("input-random-bytes", ["reconstruct", "{random_tif}", "-o", "{out}", "-q"], 1, ["random.tif"]),
    ("input-truncated", ["reconstruct", "{truncated_tif}", "-o", "{out}", "--method", "sml", "-q"], 1, ["truncated.tif"]),
    ("input-truncated-out-of-core", ["reconstruct", "{truncated_tif}", "-o", "{out}", "--out-of-core", "--method", "sml", "-q"], 1, ["truncated.tif"]),
    ("input-symlink-loop", ["reconstruct", "{loop}", "-o", "{out}", "-q"], 1, ["loop.tif"]),
    ("input-empty-folder", ["reconstruct", "{empty_dir}", "-o", "{out}", "-q"], 1, ["empty_dir"]),
    ("input-one-frame", ["reconstruct", "{one_frame}", "-o", "{out}", "-q"], 1, ["one.npy"]),
    ("input-nan-frames", ["reconstruct", "{nan_stack}", "-o", "{out}", "--method", "sml", "-q"], 1, ["NaN"]),
    ("positions-wrong-count", ["reconstruct", "{stack}", "-o", "{out}", "--focus-positions", "1,2,3", "--method", "sml", "-q"], 1, ["3"]),
    ("sample-and-input", ["reconstruct", "{stack}", "--sample", "-o", "{out}"], 2, ["--sample"]),
    ("neither-input-nor-sample", ["reconstruct", "-o", "{out}"], 2, ["--sample"]),
    ("tta-out-of-core", ["reconstruct", "{stack}", "-o", "{out}", "--out-of-core", "--method", "gplws", "--tta", "2"], 2, ["--tta"]),
    ("axis-pick-out-of-core", ["reconstruct", "{stack}", "-o", "{out}", "--out-of-core", "--axis-pick", "T=1"], 2, ["--axis-pick"]),
    ("autofocus-frame-beyond-stack", ["autofocus", "{stack}", "--frame", "99", "-q", "--device", "cpu"], 1, ["99"]),
    ("autofocus-output-is-a-file", ["autofocus", "{image}", "-o", "{file}", "-q"], 1, ["existing.txt"]),
    ("autofocus-missing-weights", ["autofocus", "{image}", "--weights", "{root}/nope.safetensors", "-q", "--device", "cpu"], 1, ["nope.safetensors"]),
    ("batch-output-is-a-file", ["batch", "{stack}", "-o", "{file}", "-q"], 1, ["existing.txt"]),
    ("eval-both-inputs", ["eval", "{empty_dir}", "--synthetic", "1"], 2, ["--synthetic"]),
    ("eval-json-is-a-folder", ["eval", "--synthetic", "1", "--json", "{empty_dir}", "-q"], 1, ["--json", "empty_dir"]),
    ("bench-bad-sizes", ["bench", "--sizes", "1x2"], 2, ["--sizes"]),
    ("bench-markdown-in-missing-folder", ["bench", "--markdown", "{root}/no/such/t.md"], 1, ["--markdown"]),
    ("export-onnx-is-a-folder", ["export", "--onnx", "{empty_dir}"], 1, ["--onnx"]),
]
_LDSE_KINDS = ["empty", "truncated", "random", "wrong_shape", "wrong_dtype", "int_dtype", "missing_keys",
               "extra_keys", "nan", "inf", "broken_config", "wrong_format", "folder_broken_config",
               "broken_card", "empty_folder"]
_WORDS = {"wrong_shape": "shape", "wrong_dtype": "dtype", "int_dtype": "dtype", "missing_keys": "missing",
          "extra_keys": "unexpected", "nan": "NaN", "inf": "infinite", "broken_config": "JSON",
          "wrong_format": "format", "folder_broken_config": "config.json", "broken_card": "w.json",
          "empty": "empty", "truncated": "damaged", "random": "damaged", "empty_folder": "no .safetensors"}
DATA_CASES += [
    (f"autofocus-weights-{kind}", ["autofocus", "{image}", "--weights", f"{{ldse:{kind}}}", "-q", "--device", "cpu"],
     1, [_WORDS[kind]])
    for kind in _LDSE_KINDS
]
DATA_CASES += [
    (f"export-weights-{kind}", ["export", "--onnx", "{out}/m.onnx", "--weights", f"{{gplws:{kind}}}"], 1, [_WORDS[kind]])
    for kind in ("truncated", "wrong_shape", "nan", "folder_broken_config")
]


@pytest.mark.parametrize(("argv", "code", "words"), [pytest.param(a, c, w, id=i) for i, a, c, w in DATA_CASES])
def test_bad_data_gives_one_line(argv, code, words, files, tmp_path, capsys):
    filled = _fill(argv, files, tmp_path)
    got, err = _run_in_process(filled, capsys)
    _check_message(got, err, code, words)
    assert not (tmp_path / "out" / "depth.tif").exists()


def test_every_damaged_weights_file_names_itself(files, tmp_path, capsys):
    for kind in _LDSE_KINDS:
        path = files[f"ldse:{kind}"]
        code, err = _run_in_process(_fill(["autofocus", "{image}", "--weights", str(path), "-q"], files, tmp_path), capsys)
        shown = path.name if kind not in ("folder_broken_config", "broken_card") else ""
        assert code == EXIT_ERROR and shown in err, (kind, err)


def test_user_file_is_untouched_when_refused(files, tmp_path, capsys):
    before = files["file"].read_bytes()
    _run_in_process(_fill(["reconstruct", "{stack}", "-o", "{file}", "--method", "sml", "-q"], files, tmp_path), capsys)
    assert files["file"].read_bytes() == before


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        pytest.param(RuntimeError("kaboom"), ["RuntimeError", "kaboom", "--debug"], id="unexpected-error"),
        pytest.param(PermissionError(13, "Permission denied", "/x/depth.tif"), ["/x/depth.tif", "Permission denied"], id="os-error"),
        pytest.param(MemoryError(), ["out of memory", "--out-of-core"], id="memory-error"),
    ],
)
def test_unexpected_exceptions_are_one_line(exc, words, files, tmp_path, capsys, monkeypatch):
    import napari_gplws.api as api

    def boom(*_a, **_k):
        raise exc

    monkeypatch.setattr(api, "reconstruct", boom)
    argv = _fill(["reconstruct", "{stack}", "-o", "{out}", "--method", "sml", "-q"], files, tmp_path)
    code, err = _run_in_process(argv, capsys)
    _check_message(code, err, EXIT_ERROR, words)
    with pytest.raises(type(exc)):
        main(["--debug", *argv])


def test_batch_cuda_without_cuda_is_refused_before_the_cluster(files, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv = _fill(["batch", "{stack}", "-o", "{out}", "--device", "cuda", "-q"], files, tmp_path)
    code, err = _run_in_process(argv, capsys)
    _check_message(code, err, EXIT_ERROR, ["cuda", "CUDA"])
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# The same through a real process, with a timeout (a hang fails)
# --------------------------------------------------------------------------------------------
SUBPROCESS_CASES = [
    ("workers-0", ["batch", "{stack}", "-o", "{out}", "--workers", "0"], 2, ["--workers"]),
    ("workers-negative", ["batch", "{stack}", "-o", "{out}", "--workers", "-1"], 2, ["--workers"]),
    ("threads-per-worker-0", ["batch", "{stack}", "-o", "{out}", "--threads-per-worker", "0"], 2, ["--threads-per-worker"]),
    ("batch-output-is-a-file", ["batch", "{stack}", "-o", "{file}", "-q"], 1, ["existing.txt"]),
    ("batch-cuda-without-cuda", ["batch", "{stack}", "-o", "{out}", "--device", "cuda", "-q"], 1, ["CUDA"]),
    ("stride-0", ["autofocus", "{image}", "--stride", "0"], 2, ["--stride"]),
    ("min-content-5", ["autofocus", "{image}", "--min-content", "5"], 2, ["--min-content"]),
    ("grid-huge", ["autofocus", "{image}", "--grid", "1000x1000"], 2, ["--grid"]),
    ("tile-size-0", ["reconstruct", "{stack}", "-o", "{out}", "--tile-size", "0"], 2, ["--tile-size"]),
    ("tile-size-negative", ["reconstruct", "{stack}", "-o", "{out}", "--tile-size", "-64"], 2, ["--tile-size"]),
    ("focus-step-1e300", ["reconstruct", "{stack}", "-o", "{out}", "--focus-step", "1e300"], 2, ["--focus-step"]),
    ("chunk-1", ["reconstruct", "{stack}", "-o", "{out}", "--out-of-core", "--chunk", "1"], 2, ["--chunk"]),
    ("threads-0", ["reconstruct", "{stack}", "-o", "{out}", "--out-of-core", "--threads", "0"], 2, ["--threads"]),
    ("output-is-a-file", ["reconstruct", "{stack}", "-o", "{file}", "--method", "sml", "-q"], 1, ["existing.txt"]),
    ("output-read-only", ["reconstruct", "{stack}", "-o", "{readonly}", "--method", "sml", "-q"], 1, ["cannot write"]),
    ("symlink-loop", ["reconstruct", "{loop}", "-o", "{out}", "-q"], 1, ["loop.tif"]),
    ("truncated-out-of-core", ["reconstruct", "{truncated_tif}", "-o", "{out}", "--out-of-core", "--method", "sml", "-q"], 1, ["truncated.tif"]),
    ("weights-random-bytes", ["autofocus", "{image}", "--weights", "{ldse:random}", "-q", "--device", "cpu"], 1, ["random.safetensors"]),
    ("weights-nan", ["autofocus", "{image}", "--weights", "{ldse:nan}", "-q", "--device", "cpu"], 1, ["NaN"]),
    ("eval-synthetic-0", ["eval", "--synthetic", "0"], 2, ["--synthetic"]),
    ("bench-repeats-0", ["bench", "--repeats", "0"], 2, ["--repeats"]),
    ("train-steps-0", ["train", "gplws", "--steps", "0"], 2, ["--steps"]),
    ("train-ldse-batch-0", ["train", "ldse", "--batch-size", "0"], 2, ["--batch-size"]),
]


@pytest.fixture(scope="module")
def subprocess_results(files, tmp_path_factory) -> dict[str, tuple[int | None, str, Path]]:
    """Run every subprocess case once, four at a time: ``{id: (exit code or None, stderr, out)}``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}

    def one(case):
        name, argv, _, _ = case
        tmp = tmp_path_factory.mktemp(f"sub-{name}")
        cmd = [sys.executable, "-m", "napari_gplws.cli", *_fill(argv, files, tmp)]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired:
            return name, (None, "timed out", tmp)
        return name, (p.returncode, p.stderr + p.stdout, tmp)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, SUBPROCESS_CASES))


@pytest.mark.parametrize(("name", "code", "words"), [pytest.param(n, c, w, id=n) for n, _, c, w in SUBPROCESS_CASES])
def test_cli_process_fails_fast_with_one_line(name, code, words, subprocess_results):
    got, err, tmp = subprocess_results[name]
    assert got is not None, f"{name}: no answer within {SUBPROCESS_TIMEOUT_S} s (a hang)"
    _check_message(got, err, code, words)
    assert not (tmp / "out" / "depth.tif").exists()


# --------------------------------------------------------------------------------------------
# Python API: arguments outside their range, damaged weights, non-finite results
# --------------------------------------------------------------------------------------------


def _autofocus(**kw):
    from napari_gplws.defocus import autofocus

    return autofocus(_frame(), device="cpu", **kw)


def _predict_defocus(**kw):
    from napari_gplws.defocus import predict_defocus

    return predict_defocus(np.zeros((2, 224, 224), np.uint8), device="cpu", **kw)


def _predict_depth(**kw):
    from napari_gplws.dff.network import predict_depth
    from napari_gplws.stack import FocalStack

    st = FocalStack(np.random.default_rng(0).integers(0, 255, (4, 32, 32), dtype=np.uint8))
    return predict_depth(st, device="cpu", **kw)


def _tile_origins(**kw):
    from napari_gplws.defocus import tile_origins

    return tile_origins((300, 300), **kw)


API_ARG_CASES = [
    *[("autofocus", _autofocus, {"batch_size": v}, "batch_size") for v in (0, -1, 1.5, True, 10**6)],
    *[("autofocus", _autofocus, {"stride": v}, "stride") for v in (0, -5, 8, 10**6, 22.5)],
    *[("autofocus", _autofocus, {"min_content": v}, "min_content") for v in (5, -0.1, float("nan"), "0.2")],
    *[("autofocus", _autofocus, {"grid": v}, "grid") for v in ((0, 3), (3, 0), (100, 100), (3,), "3x3", (1.5, 2))],
    *[("autofocus", _autofocus, {"tile_px": v}, "tile_px") for v in (0, -224, 10**5)],
    *[("autofocus", _autofocus, {"pixel_size_um": v}, "pixel_size_um") for v in (0, -1.0, float("nan"), float("inf"))],
    *[("predict_defocus", _predict_defocus, {"batch_size": v}, "batch_size") for v in (0, -3)],
    ("predict_defocus", _predict_defocus, {"min_content": 2.0, "reject_blank": True}, "min_content"),
    *[("tile_origins", _tile_origins, {"stride": v}, "stride") for v in (0, -1)],
    *[("predict_depth", _predict_depth, {"tile_size": v}, "tile_size") for v in (0, -64, 16, 10**6, 64.0)],
    *[("predict_depth", _predict_depth, {"overlap": v}, "overlap") for v in (-1, 10**6)],
    *[("predict_depth", _predict_depth, {"smooth_px": v}, "smooth_px") for v in (float("nan"), -1.0, 1e9)],
    *[("predict_depth", _predict_depth, {"tile_batch": v}, "tile_batch") for v in (0, -2)],
]


@pytest.mark.parametrize(
    ("func", "kwargs", "name"),
    [pytest.param(f, kw, n, id=f"{fid}-{n}={kw[n]!r}") for fid, f, kw, n in API_ARG_CASES],
)
def test_api_argument_out_of_range(func, kwargs, name):
    with pytest.raises(StackError) as info:
        func(**kwargs)
    assert name in str(info.value)


_GPLWS_KINDS = ["empty", "truncated", "random", "wrong_shape", "wrong_dtype", "int_dtype", "missing_keys",
                "extra_keys", "nan", "inf", "broken_config", "wrong_format", "folder_broken_config", "empty_folder"]


@pytest.mark.parametrize(
    ("network", "kind"),
    [pytest.param("ldse", k, id=f"ldse-{k}") for k in _LDSE_KINDS if k != "broken_card"]
    + [pytest.param("gplws", k, id=f"gplws-{k}") for k in _GPLWS_KINDS],
)
def test_damaged_weights_are_a_model_error(network, kind, files):
    from napari_gplws.models.registry import load_gplws, load_ldse

    path = files[f"{network}:{kind}"]
    with pytest.raises(ModelError) as info:
        (load_ldse if network == "ldse" else load_gplws)(path, "cpu")
    text = str(info.value)
    assert _WORDS[kind] in text, text
    assert ("gplws train" in text) or ("Give" in text) or ("give" in text), text  # the fix


def test_broken_model_card_is_a_model_error(files):
    from napari_gplws.models.registry import model_card

    with pytest.raises(ModelError, match=r"w\.json"):
        model_card(files["ldse:broken_card"])


def test_nan_weights_never_give_a_nan_map(files):
    with pytest.raises(ModelError, match="NaN"):
        _autofocus(weights=files["ldse:nan"])
    with pytest.raises(ModelError, match="NaN"):
        _predict_depth(weights=files["gplws:nan"], tta=1)


@pytest.mark.parametrize(
    ("writer", "values"),
    [
        pytest.param("depth", [np.nan], id="depth-nan"),
        pytest.param("depth", [np.inf], id="depth-inf"),
        pytest.param("depth", [-np.inf], id="depth-minus-inf"),
        pytest.param("depth64", [1e300], id="depth-overflows-float32"),
        pytest.param("depth-allow-nan", [np.inf], id="depth-inf-even-when-nan-allowed"),
        pytest.param("image", [np.nan], id="confidence-nan"),
        pytest.param("image", [np.inf], id="aif-inf"),
        pytest.param("rgb", [np.nan], id="aif-rgb-nan"),
    ],
)
def test_non_finite_results_are_not_written(writer, values, tmp_path):
    from napari_gplws.io import write_depth_tiff, write_image_tiff

    a = np.ones((8, 8, 3) if writer == "rgb" else (8, 8), np.float64 if writer == "depth64" else np.float32)
    a[2, 3] = values[0]
    target = tmp_path / "x.tif"
    with pytest.raises(GplwsError) as info:
        if writer.startswith("depth"):
            write_depth_tiff(target, a, units="µm", pixel_size_um=None, allow_nan=writer.endswith("nan"))
        else:
            write_image_tiff(target, a)
    assert "x.tif" in str(info.value) and "nothing was written" in str(info.value)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_nan_depth_is_written_when_allowed(tmp_path):
    from napari_gplws.io import read_depth_tiff, write_depth_tiff

    a = np.ones((8, 8), np.float32)
    a[0, 0] = np.nan
    write_depth_tiff(tmp_path / "d.tif", a, units="µm", pixel_size_um=None, allow_nan=True)
    back, _ = read_depth_tiff(tmp_path / "d.tif")
    assert np.isnan(back[0, 0]) and np.isfinite(back[1:]).all()


def test_packaged_weights_still_load_and_cards_parse():
    from napari_gplws.models.registry import load_gplws, load_ldse, model_card

    assert load_gplws("gplws_default", "cpu") is not None and load_ldse("ldse_default", "cpu") is not None
    assert json.dumps(model_card("ldse_default")) and model_card("gplws_default")
