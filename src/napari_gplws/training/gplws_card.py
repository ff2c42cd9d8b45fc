"""The model card of a GPLWS-Net training run, and writing the fused weights with it.

:func:`run_card` assembles the card (data, command, seed, steps, wall time, device,
parameter counts before and after fusing, validation); :func:`write_weights_and_card`
writes the fused weights and card through :func:`napari_gplws.models.registry.save_gplws`
(to ``OUT_DIR/final.safetensors`` and, when asked, to the packaged location with the
held-out benchmark of :func:`benchmark_for_card`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from napari_gplws.training.gplws import TrainConfig

__all__ = ["benchmark_for_card", "run_card", "write_weights_and_card"]


def run_card(
    cfg: TrainConfig,
    *,
    step: int,
    epoch: int,
    wall_min: float,
    device: Any,
    params_train: int,
    params_fused: int,
    config: dict[str, Any],
    synth_pool: bool,
    validation: dict[str, Any],
) -> dict[str, Any]:
    """The model card of a finished GPLWS-Net run (JSON-serialisable).

    Parameters
    ----------
    cfg
        The run's options (``command``, ``seed``, batch and epoch sizes, data sources).
    step, epoch, wall_min
        Steps and epochs done, wall time (minutes).
    device
        The ``torch.device`` the run used.
    params_train, params_fused
        Parameter counts of the trained and of the fused network.
    config
        The fused network's configuration.
    synth_pool
        Whether stacks of the project simulator were mixed in.
    validation
        Final, best and classical validation figures.

    Returns
    -------
    dict
        The card, as :func:`napari_gplws.models.registry.save_gplws` writes it.
    """
    import torch

    if device.type == "cpu":
        device_text = f"{device} ({torch.get_num_threads()} threads)"
    else:
        device_text = str(device)
    return {
        "name": "gplws_default",
        "summary": "GPLWS-Net depth-from-focus network, fused (re-parameterised) weights.",
        "data": (
            "Synthetic focus stacks rendered on the fly by napari_gplws.training.gplws_data."
            "SyntheticFocusDataset (all height families, N in {8,12,16,20,24,32}, crops 64/96 "
            "px, textures with textureless patches, blur per step, noise, gamma, drift, "
            "8/16-bit/float, gray+colour, flips, 90-degree rotations, reversed order)"
            + (
                f", mixed {cfg.synth_fraction:.0%} with napari_gplws.sim.focus_stacks stacks"
                if synth_pool
                else ""
            )
            + (f", Micro 3D folder {cfg.micro3d}" if cfg.micro3d else "")
            + ". No real microscope data."
        ),
        "command": cfg.command or "gplws train gplws",
        "seed": cfg.seed,
        "steps": step,
        "epochs": epoch,
        "epoch_steps": cfg.epoch_steps,
        "batch_size": cfg.batch_size,
        "wall_time_min": round(wall_min, 1),
        "device": device_text,
        "params_train": params_train,
        "params_fused": params_fused,
        "config": config,
        "input_normalisation": (
            "per stack: (x - p0.5) / (p99.5 - p0.5); colour reduced to Rec.601 luma"
        ),
        "output": (
            "softmax over frames; depth = sum_k p_k * position_k; confidence = 1 - entropy/log N"
        ),
        "validation": validation,
        "init_weights": cfg.init_weights,
        "teacher": (
            {"weights": cfg.teacher_weights, "views": cfg.teacher_views, "weight": cfg.distill_weight}
            if cfg.teacher_weights else None
        ),
    }


def write_weights_and_card(
    fused: Any, card: dict[str, Any], out: Path, cfg: TrainConfig, log: Callable[[str], None]
) -> Path:
    """Write the fused network with its card to ``out/final.safetensors`` (and ``weights_out``).

    With ``cfg.weights_out`` the card also gets the held-out benchmark
    (:func:`benchmark_for_card` of ``cfg.benchmark`` stacks) and is written to both places.

    Parameters
    ----------
    fused
        The fused (re-parameterised) network.
    card
        Its model card from :func:`run_card` (``benchmark`` is added to it).
    out
        The run's folder.
    cfg
        The run's options.
    log
        Logger.

    Returns
    -------
    Path
        The weights written last (``weights_out`` when given).
    """
    from napari_gplws.models.registry import save_gplws

    final = save_gplws(copy.deepcopy(fused), out / "final.safetensors", card)
    log(
        f"fused weights written to {final} "
        f"(params {card['params_train']} -> {card['params_fused']})"
    )
    weights = final
    if cfg.weights_out:
        card["benchmark"] = benchmark_for_card(final, cfg.benchmark, log)
        weights = save_gplws(fused, Path(cfg.weights_out), card)
        save_gplws(copy.deepcopy(fused), out / "final.safetensors", card)
        log(f"packaged weights + model card written to {weights}")
    return weights


def benchmark_for_card(weights: Path, n: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Held-out benchmark metrics (network vs classical) for the model card; never raises.

    Parameters
    ----------
    weights
        The weights file to benchmark.
    n
        Synthetic stacks (seeds never used in training); ``0`` skips the benchmark.
    log
        Logger (the benchmark table is logged).

    Returns
    -------
    dict
        ``description``, ``rows`` and ``table``; ``{}`` when skipped; ``error`` when it
        failed.
    """
    if n <= 0:
        return {}
    try:
        from napari_gplws.evaluation.depth_benchmark import evaluate
        from napari_gplws.evaluation.metrics import format_table

        from napari_gplws.dff.methods import CLASSICAL_METHODS
        from napari_gplws.dff.network import DEFAULT_TTA

        t0 = time.perf_counter()
        rows = evaluate(n=n, device="cpu", weights=str(weights))
        table = format_table(rows)
        log(f"benchmark ({n} stacks, {time.perf_counter() - t0:.0f} s):\n{table}")
        best = min((r["RMSE"], m) for m, r in rows.items() if m in CLASSICAL_METHODS)
        ratios = {m: r["RMSE"] / best[0] for m, r in rows.items() if m.startswith("gplws")}
        return {
            "description": (
                f"napari_gplws.evaluation.depth_benchmark.synthetic_benchmark(n={n}) "
                f"(seeds never used in training). gplws = the default inference ({DEFAULT_TTA} "
                "test-time-augmentation view(s)); gplws-ttaK = K views. RMSE ratio to the best "
                f"classical method ({best[1]}): "
                + ", ".join(f"{v:.3f} ({m})" for m, v in ratios.items()) + "."
            ),
            "rows": rows,
            "table": table,
            "ratio_to_best_classical": ratios,
            "inference_default_tta": DEFAULT_TTA,
        }
    except Exception as exc:  # noqa: BLE001 - the weights are still written
        log(f"benchmark skipped: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}
