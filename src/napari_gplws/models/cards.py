"""Model cards as Markdown, for both networks, and the parameter counts they report.

A model card is a JSON-serialisable dict written next to a weights file (see
:mod:`napari_gplws.models.registry`); the functions here render it as the Markdown file
beside it: :func:`card_markdown` for GPLWS-Net (and the header of every card) and
:func:`ldse_card_markdown` for LDSE-NET, whose card also holds held-out test tables.
Nothing here imports torch.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "calibration_card_markdown",
    "card_markdown",
    "count_parameters",
    "ldse_card_markdown",
    "weights_summary_line",
]


def count_parameters(model: Any) -> int:
    """Number of parameters (trainable or not) of a network.

    Parameters
    ----------
    model
        A ``torch.nn.Module``.

    Returns
    -------
    int
        Sum of the element counts of ``model.parameters()``.
    """
    return int(sum(p.numel() for p in model.parameters()))


def card_markdown(card: dict[str, Any]) -> str:
    """Render a model card as Markdown: its header entries, benchmark table and validation.

    This is the whole card of GPLWS-Net and the header of an LDSE-NET card
    (:func:`ldse_card_markdown`).

    Parameters
    ----------
    card
        Model-card content, as written next to the weights (JSON).

    Returns
    -------
    str
        Markdown text ending with a newline.
    """
    lines = [f"# Model card: {card.get('name', 'GPLWS-Net')}", ""]
    for key in ("summary", "data", "history", "command", "init_weights", "teacher", "seed", "steps",
                "epochs", "wall_time_min", "device", "params_train", "params_fused", "config"):
        if card.get(key) is not None:
            value = card[key]
            text = json.dumps(value) if isinstance(value, (dict, list)) else value
            lines.append(f"- **{key}**: {text}")
    table = card.get("benchmark", {}).get("table")
    if table:
        description = str(card["benchmark"].get("description", ""))
        lines += ["", "## Held-out synthetic benchmark", "", description, "", table]
    other = card.get("benchmark_other_seeds", {})
    if other.get("table"):
        lines += ["", "## The same benchmark, other seeds", "", str(other.get("description", "")), "",
                  other["table"]]
    if card.get("validation"):
        lines += ["", "## Final validation (training renderer, held-out seeds)", "",
                  "```", json.dumps(card["validation"], indent=1), "```"]
    return "\n".join(lines) + "\n"


def _fmt(v: Any, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` decimals, ``None`` as a dash."""
    if v is None:
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def ldse_card_markdown(card: dict[str, Any]) -> str:
    """Render an LDSE-NET model card as Markdown.

    The header of :func:`card_markdown`, then the card's sign convention and optics, the
    held-out test tables (signed and magnitude errors, per-bin errors, regions, frame
    pairs), the status paragraph and the breakdowns per modality, specimen and aberration
    configuration. Entries the card lacks are left out.

    Parameters
    ----------
    card
        Model-card content, as written next to the weights (JSON).

    Returns
    -------
    str
        Markdown text ending with a newline.
    """
    if card.get("kind") == "ldse-calibration":
        return calibration_card_markdown(card)
    lines = [card_markdown(card).rstrip(), ""]
    for key in ("run_history", "sign_convention", "other_optics"):
        if key in card:
            lines.append(f"- **{key}**: {card[key]}")
    if "optics" in card:
        lines.append(f"- **optics**: {json.dumps(card['optics'], ensure_ascii=False)}")
    net, base = card.get("test"), card.get("baseline_abs_only", {})
    if net:
        dof = net.get("dof_um", float("nan"))
        lines += [
            "",
            "## Held-out simulated test set",
            "",
            str(card.get("test_set", "")),
            "",
            "| metric (µm unless stated) | LDSE-NET | classical \\|z\\|-only baseline |",
            "|---|---|---|",
            (
                f"| MAE, \\|z\\| ≤ 5 µm | {_fmt(net.get('mae_le5'))} | "
                f"{_fmt(base.get('mae_abs_le5'))} (of \\|z\\|) |"
            ),
            (
                f"| MAE of \\|z\\|, \\|z\\| ≤ 5 µm | {_fmt(net.get('mae_abs_le5'))} | "
                f"{_fmt(base.get('mae_abs_le5'))} |"
            ),
            f"| sign accuracy, \\|z\\| ≥ 1 µm | {_fmt(net.get('sign_acc_ge1'))} | 0.5 (no sign) |",
            (
                "| sign accuracy where the direction is confident "
                f"(≥ {net.get('confident_threshold', 0.5)}), "
                f"\\|z\\| ≥ 1 µm | {_fmt(net.get('sign_acc_confident_ge1'))} "
                f"({_fmt(net.get('confident_fraction_ge1'), 2)} of the tiles) | – |"
            ),
            (
                f"| MAE, all (±10 µm) | {_fmt(net.get('mae'))} | "
                f"{_fmt(base.get('mae_abs'))} (of \\|z\\|) |"
            ),
            f"| RMSE | {_fmt(net.get('rmse'))} | – |",
            (
                f"| median absolute error | {_fmt(net.get('median'))} | "
                f"{_fmt(base.get('median_abs'))} (of \\|z\\|) |"
            ),
            (
                f"| P90 absolute error | {_fmt(net.get('p90'))} | "
                f"{_fmt(base.get('p90_abs'))} (of \\|z\\|) |"
            ),
            (
                f"| fraction within DOF/2 ({dof / 2:.2f} µm) | "
                f"{_fmt(net.get('within_dof_half'))} | "
                f"{_fmt(base.get('within_dof_half_abs'))} (of \\|z\\|) |"
            ),
            "",
            "### Error per 1 µm bin of the true defocus",
            "",
            "| true defocus (µm) | n | MAE | bias (mean predicted − true) |",
            "|---|---|---|---|",
        ]
        for b in net.get("per_bin", []):
            lo, hi = b["bin_um"]
            lines.append(f"| [{lo:g}, {hi:g}) | {b['n']} | {_fmt(b['mae'])} | {_fmt(b['bias'])} |")
    mag = card.get("test_magnitude")
    if mag:
        lines += [
            "",
            "### Unsigned output (magnitude head) on the same tiles",
            "",
            "| metric (µm, against \\|z\\|) | LDSE-NET magnitude | classical baseline |",
            "|---|---|---|",
            (
                f"| MAE, \\|z\\| ≤ 5 µm | {_fmt(mag.get('mae_abs_le5'))} | "
                f"{_fmt(base.get('mae_abs_le5'))} |"
            ),
            f"| MAE, all | {_fmt(mag.get('mae_abs'))} | {_fmt(base.get('mae_abs'))} |",
            f"| median | {_fmt(mag.get('median_abs'))} | {_fmt(base.get('median_abs'))} |",
            f"| P90 | {_fmt(mag.get('p90_abs'))} | {_fmt(base.get('p90_abs'))} |",
            (
                f"| within DOF/2 | {_fmt(mag.get('within_dof_half_abs'))} | "
                f"{_fmt(base.get('within_dof_half_abs'))} |"
            ),
        ]
    reg = card.get("regions")
    if reg:
        lines += [
            "",
            "### Regions (what a focal-error map shows)",
            "",
            (
                f"Median of {reg['tiles_per_region']} tiles per region ({reg['region_um']:.0f} µm "
                f"square), {reg['n']} regions of held-out specimens and aberrations, defocus "
                "uniform in ±10 µm:"
            ),
            "",
            (
                "| MAE, \\|z\\| ≤ 5 µm | sign accuracy, \\|z\\| ≥ 1 µm | sign where confident "
                "(share) | MAE, all | median | P90 | within DOF/2 |"
            ),
            "|---|---|---|---|---|---|---|",
            (
                f"| {_fmt(reg.get('mae_le5'))} | {_fmt(reg.get('sign_acc_ge1'))} | "
                f"{_fmt(reg.get('sign_acc_confident_ge1'))} "
                f"({_fmt(reg.get('confident_fraction_ge1'), 2)}) | {_fmt(reg.get('mae'))} | "
                f"{_fmt(reg.get('median'))} | {_fmt(reg.get('p90'))} | "
                f"{_fmt(reg.get('within_dof_half'))} |"
            ),
        ]
    pairs = card.get("pairs")
    if pairs:
        lines += [
            "",
            "### Two frames a known step apart (direction from the focus positions)",
            "",
            (
                "`autofocus(stack, positions, combine_frames=True)`: each tile's defocus from "
                "the best focus that fits both frames' magnitudes (napari_gplws.defocus.fit), "
                "held-out specimens and aberrations, first frame uniform in ±10 µm:"
            ),
            "",
            (
                "| step (µm) | pairs | MAE, \\|z\\| ≤ 5 µm | sign accuracy, \\|z\\| ≥ 1 µm | "
                "sign where confident (share) | median | P90 | "
                "single frame: MAE \\|z\\| ≤ 5, sign |"
            ),
            "|---|---|---|---|---|---|---|---|",
        ]
        for pr in pairs:
            one = pr.get("single_frame", {})
            lines.append(
                f"| {pr['step_um']:g} | {pr['n']} | {_fmt(pr.get('mae_le5'))} | "
                f"{_fmt(pr.get('sign_acc_ge1'))} | {_fmt(pr.get('sign_acc_confident_ge1'))} "
                f"({_fmt(pr.get('confident_fraction_ge1'), 2)}) | {_fmt(pr.get('median'))} | "
                f"{_fmt(pr.get('p90'))} | {_fmt(one.get('mae_le5'))}, "
                f"{_fmt(one.get('sign_acc_ge1'))} |"
            )
    if card.get("status"):
        lines += ["", "## Status", "", str(card["status"])]
    for key, title, label in (
        ("per_modality", "Per modality", "modality"),
        ("per_specimen", "Per test specimen", "specimen"),
        ("per_aberration", "Per test aberration configuration", "configuration"),
    ):
        rows = card.get(key)
        if not rows:
            continue
        lines += [
            "",
            f"### {title}",
            "",
            (
                f"| {label} | n | MAE | MAE \\|z\\| ≤ 5 | MAE of \\|z\\|, \\|z\\| ≤ 5 | "
                "sign accuracy \\|z\\| ≥ 1 | sign where confident (share) |"
            ),
            "|---|---|---|---|---|---|---|",
        ]
        for k, v in rows.items():
            lines.append(
                f"| {k} | {v['n']} | {_fmt(v['mae'])} | {_fmt(v['mae_le5'])} | "
                f"{_fmt(v.get('mae_abs_le5'))} | {_fmt(v['sign_acc_ge1'])} | "
                f"{_fmt(v.get('sign_acc_confident_ge1'))} "
                f"({_fmt(v.get('confident_fraction_ge1'), 2)}) |"
            )
    return "\n".join(lines) + "\n"


def weights_summary_line(card: dict[str, Any], name: str) -> str:
    """One plain line about LDSE-NET weights: which ones, and their held-out figures.

    For a calibration card: the stacks it was calibrated on and its held-out sign
    accuracy, signed MAE and magnitude MAE, with the starting weights' figures on the same
    fields. For other cards: the card's name and summary.
    """
    if name.endswith(".safetensors"):  # a path: its file name says enough
        name = name.replace("\\", "/").rsplit("/", 1)[-1][: -len(".safetensors")]
    ho = card.get("held_out") or {}
    if card.get("kind") != "ldse-calibration" or not ho:
        return f"{name}: {card.get('name', 'LDSE-NET')}" + (
            f" — {card['summary']}" if card.get("summary") else ""
        )

    def figs(m: dict[str, Any]) -> str:
        return (
            f"sign {_fmt(m.get('sign_acc_ge1'), 2)} (|z| ≥ 1 µm), MAE {_fmt(m.get('mae_le5'), 2)} µm"
            f" and |z| MAE {_fmt(m.get('mag_mae_le5'), 2)} µm (|z| ≤ 5 µm)"
        )

    n = len(card.get("stacks", []))
    where = f"{ho['stacks']} held-out stacks" if ho.get("stacks") else "held-out fields"
    return (
        f"{name}: calibrated on {n} stacks; on {where}: {figs(ho.get('after', {}))}; "
        f"{card.get('base_weights', 'the starting weights')} there: "
        f"sign {_fmt(ho.get('before', {}).get('sign_acc_ge1'), 2)}, "
        f"MAE {_fmt(ho.get('before', {}).get('mae_le5'), 2)} µm"
    )


def calibration_card_markdown(card: dict[str, Any]) -> str:
    """Render the card of calibrated LDSE-NET weights (held-out figures, stacks, options)."""
    lines = [card_markdown(card).rstrip(), ""]
    for key in ("base_weights", "sign_convention", "cpu_time_min", "summary_line"):
        if key in card:
            lines.append(f"- **{key}**: {card[key]}")
    lines.append(f"- **optics**: {json.dumps(card.get('optics', {}), ensure_ascii=False)}")
    ho = card.get("held_out", {})
    b, a = ho.get("before", {}), ho.get("after", {})
    lines += [
        "",
        (f"## Held-out fields of the calibration stacks ({ho.get('split', '')}, "
         f"{ho.get('tiles', 0)} tiles)"),
        "",
        f"| metric | {card.get('base_weights', 'before')} | calibrated |",
        "|---|---|---|",
        f"| sign accuracy, \\|z\\| ≥ 1 µm | {_fmt(b.get('sign_acc_ge1'))} | {_fmt(a.get('sign_acc_ge1'))} |",
        f"| signed MAE, \\|z\\| ≤ 5 µm | {_fmt(b.get('mae_le5'))} | {_fmt(a.get('mae_le5'))} |",
        f"| magnitude MAE, \\|z\\| ≤ 5 µm | {_fmt(b.get('mag_mae_le5'))} | {_fmt(a.get('mag_mae_le5'))} |",
        "",
        ("These fields also chose the kept weights among the evaluations, so the figures are "
         "a little optimistic; score fields taken afterwards for an unbiased figure."),
        "",
        "## Stacks",
        "",
        "| stack | frames | focus range (µm) | step (µm) | tiles | held out |",
        "|---|---|---|---|---|---|",
    ]
    for s in card.get("stacks", []):
        lo, hi = s.get("focus_range_um", [float("nan")] * 2)
        lines.append(
            f"| {s.get('source')} | {s.get('frames')} | {lo:g} … {hi:g} | "
            f"{s.get('focus_step_um')} | {s.get('tiles')} | {'yes' if s.get('held_out') else ''} |"
        )
    if card.get("calibration"):
        lines += ["", "## Options", "", "```", json.dumps(card["calibration"], indent=1), "```"]
    return "\n".join(lines) + "\n"
