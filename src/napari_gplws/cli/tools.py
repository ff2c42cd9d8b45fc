"""``gplws eval``, ``gplws bench`` and ``gplws export``: accuracy tables, speed tables, ONNX.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_gplws.cli._common import EXIT_OK, UsageError, _Progress, check_output_file


# --- eval -----------------------------------------------------------------------------------
def cmd_eval(args: argparse.Namespace) -> int:
    from napari_gplws.evaluation.depth_benchmark import (
        evaluate,
        load_eval_dataset,
        synthetic_benchmark,
    )
    from napari_gplws.evaluation.metrics import format_table

    if args.json:
        check_output_file(args.json, "--json")
    if args.synthetic and args.dataset is not None:
        raise UsageError("Give a DATASET folder or --synthetic N, not both.")
    if args.synthetic:
        samples = synthetic_benchmark(n=args.synthetic)
        name = f"synthetic benchmark ({args.synthetic} stacks)"
    else:
        if args.dataset is None:
            raise UsageError("Give a DATASET folder, or --synthetic N for the built-in benchmark.")
        samples = load_eval_dataset(args.dataset, gt_scale=args.gt_scale)
        name = str(args.dataset)
    methods = args.methods.split(",") if args.methods else None
    bar = _Progress("eval", enabled=not args.quiet)
    try:
        table = evaluate(samples, methods=methods, device=args.device, progress=bar)
    finally:
        bar.close()
    print(f"# {name}\n")
    print(format_table(table))
    if args.json:
        Path(args.json).write_text(json.dumps({"dataset": name, "metrics": table}, indent=2), encoding="utf-8")
        print(f"\nwrote {args.json}")
    return EXIT_OK


# --- bench ----------------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    from napari_gplws.evaluation.speed import run_bench

    if args.markdown:
        check_output_file(args.markdown, "--markdown")
    sizes = parse_sizes(args.sizes) if args.sizes else None
    methods = args.methods.split(",") if args.methods else None
    text = run_bench(sizes=sizes, methods=methods, repeats=args.repeats, device=args.device, echo=print,
                     precision=args.precision, compile=args.compile, tta=args.tta,
                     autofocus=not args.no_autofocus, align_rows=not args.methods)
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
        print(f"wrote {args.markdown}")
    return EXIT_OK


def parse_sizes(text: str) -> list[tuple[int, int, int]]:
    """``"20x256x256,10x600x800"`` → ``[(20, 256, 256), (10, 600, 800)]``.

    Raises
    ------
    UsageError
        An item is not ``NxHxW`` with N in 2…1000 and H, W in 16…16384.
    """
    sizes = []
    for item in text.split(","):
        try:
            n, h, w = (int(v) for v in item.strip().lower().split("x"))
        except ValueError:
            n = h = w = -1
        if not (2 <= n <= 1000 and 16 <= h <= 16384 and 16 <= w <= 16384):
            raise UsageError(
                f"--sizes items must look like NxHxW with N 2…1000 frames and H, W 16…16384 px, "
                f"e.g. 20x256x256; got '{item}'."
            )
        sizes.append((n, h, w))
    return sizes


def cmd_export(args: argparse.Namespace) -> int:
    from napari_gplws.models.onnx import export_onnx

    check_output_file(args.onnx, "--onnx", create_parent=True)

    path = export_onnx(args.onnx, weights=args.weights)
    print(f"wrote {path} (fused GPLWS-Net; input: normalised (B, 1, N, H, W) float32, output: logits over N)")
    return EXIT_OK
