"""The autofocus heatmap: a PNG of one frame's region grids with the values in the cells.

:func:`plot_heatmap` draws the predicted defocus and, with a stack, the true defocus and the
error, with matplotlib (imported on the first call, with the non-interactive ``Agg``
backend). What it is not: the napari view of the same grids
(:mod:`napari_gplws.widgets.focal_error_widget`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_gplws.defocus.result import CONFIDENT_DIRECTION, AutofocusResult
from napari_gplws.errors import GplwsError

__all__ = ["plot_heatmap"]


def plot_heatmap(
    result: AutofocusResult,
    path: str | Path,
    frame: int | None = None,
    image: np.ndarray | None = None,
    vmax_um: float | None = None,
) -> Path:
    """Write a PNG of the region grids of one analysed frame, values written in the cells.

    Panels: predicted defocus, and with a stack the true defocus and the focal error
    (µm; diverging colour map centred on 0; empty cells = no estimate; ``?`` after a
    prediction whose direction is uncertain, see :attr:`AutofocusResult.direction_confidence`).
    When ``image`` (that frame) is given, it is drawn in grey under the predicted panel.

    Parameters
    ----------
    result
        What :func:`~napari_gplws.defocus.analyse.autofocus` returned.
    path
        The PNG to write (replaced if it exists).
    frame
        Index in the stack of the analysed frame to draw (default: the first analysed one).
    image
        That frame, drawn under the predicted panel.
    vmax_um
        Half-range of the colour map in µm (default: the largest |value|, at least 0.5).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    GplwsError
        matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise GplwsError("Drawing the heatmap needs matplotlib: pip install matplotlib.") from None

    f = 0 if frame is None else int(np.flatnonzero(result.frames == frame)[0])
    panels = [("predicted", result.predicted_um[f])]
    if (
        result.true_um is not None
        and result.error_um is not None
        and np.isfinite(result.true_um).any()  # two frames: no truth, no empty panels
    ):
        panels += [("true", result.true_um[f]), ("error = predicted − true", result.error_um[f])]
    finite = np.concatenate([np.abs(p[np.isfinite(p)]).ravel() for _, p in panels] + [np.zeros(1)])
    vmax = vmax_um or max(float(finite.max()), 0.5)
    conf = result.direction_confidence
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    h, w = result.shape_yx
    for ax, (title, grid_vals) in zip(axes[0], panels, strict=True):
        extent = (0, w, h, 0)
        if image is not None and title == "predicted":
            img = np.asarray(image)
            ax.imshow(img, cmap=None if img.ndim == 3 else "gray", extent=extent)
            alpha = 0.55
        else:
            alpha = 1.0
        im = ax.imshow(
            np.ma.masked_invalid(grid_vals),
            cmap="RdBu_r",
            vmin=-vmax,
            vmax=vmax,
            alpha=alpha,
            extent=extent,
            interpolation="nearest",
        )
        gy, gx = result.grid
        for i in range(gy):
            for j in range(gx):
                v = grid_vals[i, j]
                txt = "–" if not np.isfinite(v) else f"{v:+.2f}"
                if title == "predicted":
                    if np.isfinite(v) and conf is not None and conf[f, i, j] < CONFIDENT_DIRECTION:
                        txt += "?"
                    txt += f"\nn={int(result.n_tiles[f, i, j])}"
                ax.text(
                    (j + 0.5) * w / gx,
                    (i + 0.5) * h / gy,
                    txt,
                    ha="center",
                    va="center",
                    fontsize=10,
                    color="black",
                    bbox={"facecolor": "white", "alpha": 0.6, "lw": 0, "pad": 1.5},
                )
        ax.set_title(f"{title} (µm)")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="defocus (µm of focus-drive travel)")
    head = f"frame {int(result.frames[f])}"
    if result.focus_um is not None:
        head += f" at {result.focus_um[f]:g} µm"
    if conf is not None and np.any(conf[f] < CONFIDENT_DIRECTION):
        head += "; ? = direction uncertain"
    fig.suptitle(f"Autofocus {result.grid[0]}×{result.grid[1]}: {head}")
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
