"""Render the documentation screenshots headlessly (run under xvfb-run).

    xvfb-run -a .venv/bin/python scripts/screenshots.py

Writes PNGs into docs/images/. Each picture is made from the real plugin code path
(reader/sample, core reconstruction, layers, the dock widgets driven through their buttons)
so the docs stay true:

* ``sample_depth.png`` — the sample and its depth map (core API);
* ``depth_widget.png`` — the Depth from focus dock after Run, with the surface parameters of a
  drawn rectangle; the scale bar reads µm;
* ``surface_3d.png`` — after "View surface in 3D" on a simulated plate with drilled holes:
  height up toward the objective, so the holes look like holes; true aspect ratio;
* ``height_profile.png`` — the Height profile dock with a line across a hole: going down into
  it is a negative step;
* ``gt_editor.png``, ``gt_editor_snapped.png`` — the Ground truth editor;
* ``alignment_dock.png`` — the Depth from focus dock on the real PCB stack (7 frames that
  move by up to 36 px; ``../shared/data/real/pcb``, skipped when absent), aligned by
  ``auto``, with the aligned stack shown as a layer;
* ``focal_error_map.png`` — the Focal error map dock on a simulated tilted specimen;
  ``focal_error_rmse.png`` — its "reconstruction vs ground truth" mode on the sample;
  ``focal_error_pair.png`` — two frames 4 µm apart, direction from their focus positions;
  ``focal_error_512.png`` — one 512-px frame: all nine regions get a value.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "docs" / "images"


def sample_and_depth(viewer) -> None:
    import napari_gplws
    from napari_gplws._sample_data import sample_stack

    for data, kwargs, _kind in sample_stack():
        viewer.add_image(data, **kwargs)
    stack_layer = viewer.layers["sample stack"]
    focus = np.asarray(stack_layer.metadata["focus_um"])
    result = napari_gplws.reconstruct(
        np.asarray(stack_layer.data), focus_positions=focus, method="sml"
    )
    px = stack_layer.metadata["pixel_size_um"]
    viewer.add_image(result.aif, name="all-in-focus", scale=(px, px), units=("µm", "µm"))
    viewer.add_image(
        result.depth,
        name=f"depth ({result.units})",
        scale=(px, px),
        units=("µm", "µm"),
        colormap="turbo",
        opacity=0.6,
        metadata={"units": result.units, "method": result.method},
    )
    viewer.layers["sample stack"].visible = False
    viewer.reset_view()


def settle(seconds: float = 0.5) -> None:
    """Let Qt process events and paint for a moment."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def wait_for(predicate, timeout: float = 120.0) -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("the widget did not finish in time")
        app.processEvents()
        time.sleep(0.01)


def shoot(viewer, name: str, canvas_only: bool = False) -> None:
    viewer.scale_bar.visible = True  # it must read µm
    settle()
    path = OUT / name
    viewer.screenshot(str(path), canvas_only=canvas_only)
    print(f"wrote {path}")


def widgets(napari) -> None:
    """The two dock widgets at work on the bundled sample."""
    from napari_gplws._sample_data import sample_stack

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 900)
    for data, kwargs, _ in sample_stack():
        viewer.add_image(data, **kwargs)
    dock, w = viewer.window.add_plugin_dock_widget("napari-gplws", "Depth from focus")
    w.method_combo.setCurrentIndex(w.method_combo.findData("sml"))
    done: list[str] = []
    w.finished.connect(done.append)
    w.run_button.click()
    wait_for(lambda: bool(done))
    w.new_region_button.click()
    w.measure_button.click()
    viewer.layers.selection.active = viewer.layers["sample stack depth"]
    viewer.reset_view()
    shoot(viewer, "depth_widget.png")

    viewer.window.remove_dock_widget(dock)
    viewer.close()
    holes(napari)
    alignment_dock(napari)


def alignment_dock(napari) -> None:
    """``alignment_dock.png``: the real PCB stack aligned in the dock (skipped when absent)."""
    from napari_gplws.io import read_stack

    pcb = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "pcb"
    if not pcb.is_dir():
        print(f"skipped alignment_dock.png: no PCB example in {pcb.parent}")
        return
    stack = read_stack(pcb)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 900)
    viewer.add_image(stack.frames, name="pcb", rgb=True)
    dock, w = viewer.window.add_plugin_dock_widget("napari-gplws", "Depth from focus")
    w.method_combo.setCurrentIndex(w.method_combo.findData("sml"))
    w.show_aligned.setChecked(True)
    done: list[str] = []
    w.finished.connect(done.append)
    w.run_button.click()
    wait_for(lambda: bool(done), timeout=300)
    for layer in viewer.layers:
        layer.visible = layer.name in ("pcb all-in-focus",)
    viewer.layers.selection.active = viewer.layers["pcb all-in-focus"]
    viewer.reset_view()
    viewer.camera.zoom *= 2.5
    shoot(viewer, "alignment_dock.png")
    viewer.window.remove_dock_widget(dock)
    viewer.close()


def holes(napari) -> None:
    """``surface_3d.png`` and ``height_profile.png``: a plate with three drilled holes 18 µm
    deep and a 9 µm pocket (simulated: 0.5 µm pixels, 20 frames 1.5 µm apart),
    reconstructed through the dock."""
    from napari_gplws.sim.defocus_render import defocus_render
    from napari_gplws.training.gplws_data import render_texture

    h = w = 256
    yy, xx = np.mgrid[:h, :w]
    depth = np.full((h, w), 6.0)  # the plate's top, 6 µm below the first frame
    for cy, cx, r in ((70, 70, 30), (80, 185, 22), (180, 120, 36)):
        depth[np.hypot(yy - cy, xx - cx) < r] = 24.0  # drilled holes, 18 µm deep
    depth[175:225, 200:240] = 15.0  # a shallower square pocket
    focus = np.arange(20) * 1.5
    rng = np.random.default_rng(5)
    frames = defocus_render(render_texture(h, w, rng, 0.0), depth, focus, blur_px_per_um=0.5)
    frames = np.clip(frames * 255, 0, 255).astype(np.uint8)
    sim_depth = depth
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 900)
    viewer.add_image(
        frames, name="plate", scale=(1.5, 0.5, 0.5), units=("µm", "µm", "µm"),
        axis_labels=("z", "y", "x"),
        metadata={"focus_um": focus.tolist(), "pixel_size_um": 0.5, "units": "µm"},
    )  # fmt: skip
    dock, w = viewer.window.add_plugin_dock_widget("napari-gplws", "Depth from focus")
    w.method_combo.setCurrentIndex(w.method_combo.findData("sml"))
    done: list[str] = []
    w.finished.connect(done.append)
    w.run_button.click()
    wait_for(lambda: bool(done))
    w.view3d_button.click()
    settle(1.0)
    shoot(viewer, "surface_3d.png")
    w.view3d_button.click()

    viewer.window.remove_dock_widget(dock)
    _, p = viewer.window.add_plugin_dock_widget("napari-gplws", "Height profile")
    depth = viewer.layers["plate depth"]
    line = p.add_line_layer()
    # Across the deepest hole: from the top surface, through the hole, back to the top.
    line.data = [np.array([[180.0, 40.0], [180.0, 200.0]])]  # across the largest hole
    assert sim_depth[180, 120] > sim_depth[180, 40]
    settle(0.5)
    d = np.asarray(p.profile.distance)
    h = np.asarray(p.profile.height)
    p.marker_a.setValue(float(d[2]))
    p.marker_b.setValue(float(d[np.nanargmin(h)]))
    p.half_width.setValue(1.0)
    viewer.layers.selection.active = line
    viewer.layers["plate"].visible = False
    depth.visible = True
    viewer.reset_view()
    shoot(viewer, "height_profile.png")
    print(p.step_label.text())
    csv_path = OUT.parent.parent / "build" / "height_profile_example.csv"
    csv_path.parent.mkdir(exist_ok=True)
    p.export_csv(str(csv_path))
    print("".join(csv_path.read_text(encoding="utf-8").splitlines(keepends=True)[:7]))
    viewer.close()


def gt_editor(napari) -> None:
    """``gt_editor.png``: the Ground truth editor on a small generated dataset.

    Called by :func:`main`; to run it on its own under Xvfb::

        xvfb-run -a .venv/bin/python -c "import sys; sys.path.insert(0, 'scripts'); \
            import napari, screenshots; screenshots.gt_editor(napari)"

    Three samples (20 PNG frames, 16-bit ``depth.png`` of frame index × 100, a sidecar with
    2 µm steps); sample 1's labels are spoiled in a patch, which "Next suspect" then finds.
    """
    import json
    import tempfile

    import imageio.v3 as iio

    from napari_gplws.training.gplws_data import render_height, render_stack, render_texture

    warnings.filterwarnings("ignore", message=".*PyQt5 backend.*")
    warnings.filterwarnings("ignore", message=".*System theme detection.*")
    OUT.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp()) / "dataset"
    rng = np.random.default_rng(3)
    n, size = 20, 160
    for i, family in enumerate(("dome", "waves", "plane")):
        d = root / f"sample_{i + 1:02d}"
        d.mkdir(parents=True)
        idx = 2 + 15 * render_height(family, size, size, rng)
        frames = render_stack(idx, render_texture(size, size, rng, 0.0), n, blur_per_step=1.0)
        for k, f in enumerate(frames):
            iio.imwrite(d / f"{k + 1}.png", (np.clip(f, 0, 1) * 255).astype(np.uint8))
        gt = idx.copy()
        if i == 0:
            gt[30:70, 90:140] = 18.0  # a mislabelled patch
        iio.imwrite(d / "depth.png", np.rint(gt * 100).astype(np.uint16))
        (d / "focus.json").write_text(
            json.dumps({"focus_start_um": 0.0, "focus_step_um": 2.0, "pixel_size_um": 1.0})
        )

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 950)
    _, w = viewer.window.add_plugin_dock_widget("napari-gplws", "Ground truth editor")
    w.ask_restore = lambda message: True
    w.gt_scale.setValue(0.01)
    w.folder_edit.setText(str(root))
    w.open_button.click()
    w.model_combo.setCurrentIndex(w.model_combo.findData("sml"))
    done: list[str] = []
    w.guidance_done.connect(done.append)
    w.guidance_button.click()
    wait_for(lambda: bool(done))
    w.threshold.setValue(4.0)
    w.suspect_button.click()
    viewer.layers[f"{w.name} stack"].visible = True
    viewer.dims.set_current_step(0, 10)
    viewer.reset_view()
    viewer.layers.selection.active = w.layers["region"]
    shoot(viewer, "gt_editor.png")
    w.snap_k.setValue(19)
    w.snap_button.click()
    viewer.reset_view()
    shoot(viewer, "gt_editor_snapped.png")
    viewer.close()


def tilted_specimen_stack() -> tuple[np.ndarray, np.ndarray]:
    """A 672×672 z-scan of stained tissue (simulated optics of the LDSE-NET weights), tilted so
    that each region of the 3×3 grid is sharpest at its own focus; the top-right region is
    empty glass (no specimen), so it has no estimate."""
    from napari_gplws.sim.defocus_tiles import DefocusSimulator
    from napari_gplws.sim.psf_bank import psf_bank

    focus = np.arange(0.0, 4.01, 0.5)
    best = 2.0 + 0.6 * (np.arange(3)[None, :] - 1) + 0.3 * (np.arange(3)[:, None] - 1)
    # The training simulator's PSF size (a smaller PSF would cut off the blur). No phase: a
    # phase object's focus curve can dip at focus, which would blur the "true" values.
    bank = psf_bank(n_configs=1, seed=0, defocus_max_um=4.0, step_um=0.25, size_px=113)
    sim = DefocusSimulator(
        bank, ("he_tissue",), p_jpeg=0.0, p_partial=0.0, p_phase=0.0, defocus_max_um=4.0
    )
    rng = np.random.default_rng(3)
    frames = np.full((len(focus), 672, 672), 235, np.uint8)
    for i in range(3):
        for j in range(3):
            if (i, j) == (0, 2):
                continue  # glass: nothing to focus on
            tiles, _, _ = sim.render_field(rng, focus - best[i, j], tile_px=224, aberration=0)
            frames[:, 224 * i : 224 * (i + 1), 224 * j : 224 * (j + 1)] = tiles
    return frames, focus


def run_focal_error_dock(napari, frames, focus, name: str, frames_mode: str = "all"):
    """A viewer with the stack ``frames`` (focus positions ``focus`` µm, 0.25 µm pixels: the
    weights' own, so nothing is resampled) and the Focal error map dock run on it with the
    given **Frames** choice; returns ``(viewer, dock, finished-signal record)``."""
    px = 0.25
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 950)
    viewer.add_image(
        frames, name=name, scale=(focus[1] - focus[0], px, px),
        translate=(focus[0], 0.0, 0.0), units=("µm", "µm", "µm"),
        metadata={"focus_um": focus.tolist(), "pixel_size_um": px, "units": "µm"},
    )  # fmt: skip
    _, w = viewer.window.add_plugin_dock_widget("napari-gplws", "Focal error map")
    w.device_combo.setCurrentText("cpu")
    w.frames_combo.setCurrentIndex(w.frames_combo.findData(frames_mode))
    done: list[str] = []
    w.finished.connect(done.append)
    w.run_button.click()
    wait_for(lambda: bool(done))
    return viewer, w, done


def focal_error_map(napari) -> None:
    """``focal_error_map.png`` and ``focal_error_rmse.png``: the Focal error map dock.

    Called by :func:`main`; to run it on its own under Xvfb::

        xvfb-run -a .venv/bin/python -c "import sys; sys.path.insert(0, 'scripts'); \
            import napari, screenshots; screenshots.focal_error_map(napari)"
    """
    from napari_gplws._sample_data import sample_stack

    warnings.filterwarnings("ignore", message=".*PyQt5 backend.*")
    warnings.filterwarnings("ignore", message=".*System theme detection.*")
    OUT.mkdir(parents=True, exist_ok=True)
    frames, focus = tilted_specimen_stack()
    viewer, w, done = run_focal_error_dock(napari, frames, focus, "tilted tissue")
    viewer.dims.set_current_step(0, 2)  # the frame at 1 µm
    w.show_combo.setCurrentIndex(w.show_combo.findData("error"))
    viewer.layers.selection.active = viewer.layers["tilted tissue defocus map"]
    viewer.reset_view()
    shoot(viewer, "focal_error_map.png")
    print(w.result.autofocus.format_table(2))

    # Reconstruction vs ground truth, on the bundled sample.
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    for data, kwargs, _ in sample_stack():
        viewer.add_image(data, **kwargs)
    depth_dock, d = viewer.window.add_plugin_dock_widget("napari-gplws", "Depth from focus")
    d.method_combo.setCurrentIndex(d.method_combo.findData("sml"))
    done.clear()
    d.finished.connect(done.append)
    d.run_button.click()
    wait_for(lambda: bool(done))
    viewer.window.remove_dock_widget(depth_dock)
    for name in ("sample stack confidence", "sample stack surface"):
        viewer.layers.remove(name)
    viewer.layers["sample stack"].visible = False
    viewer.layers["sample stack depth"].visible = False  # the map over the all-in-focus image
    w.analysis_combo.setCurrentIndex(w.analysis_combo.findData("rmse"))
    w.recon_combo.setCurrentIndex(w.recon_combo.findText("sample stack depth"))
    done.clear()
    w.run_button.click()
    wait_for(lambda: bool(done))
    viewer.layers.selection.active = viewer.layers["sample stack depth RMSE map"]
    viewer.window.resize(1500, 950)
    viewer.reset_view()
    shoot(viewer, "focal_error_rmse.png")
    viewer.close()


def two_frame_stack() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two 672×672 frames 4 µm apart of the phase-free tissue of :func:`tilted_specimen_stack`,
    both below focus: each region's best focus is 6.1–7.9 µm, so the frames at 0 and 4 µm
    are 6–8 and 2–4 µm from it. Returns ``(frames, focus_um, best_um)``."""
    from napari_gplws.sim.defocus_tiles import DefocusSimulator
    from napari_gplws.sim.psf_bank import psf_bank

    focus = np.array([0.0, 4.0])
    best = 7.0 + 0.6 * (np.arange(3)[None, :] - 1) + 0.3 * (np.arange(3)[:, None] - 1)
    bank = psf_bank(n_configs=1, seed=0, defocus_max_um=8.5, step_um=0.25, size_px=113)
    sim = DefocusSimulator(
        bank, ("he_tissue",), p_jpeg=0.0, p_partial=0.0, p_phase=0.0, defocus_max_um=8.5
    )
    rng = np.random.default_rng(5)
    frames = np.zeros((2, 672, 672), np.uint8)
    for i in range(3):
        for j in range(3):
            tiles, _, _ = sim.render_field(rng, focus - best[i, j], tile_px=224, aberration=0)
            frames[:, 224 * i : 224 * (i + 1), 224 * j : 224 * (j + 1)] = tiles
    return frames, focus, best


def focal_error_pair(napari) -> None:
    """``focal_error_pair.png``: Frames › all frames, direction from their positions."""
    frames, focus, best = two_frame_stack()
    viewer, w, _ = run_focal_error_dock(napari, frames, focus, "two frames", frames_mode="combined")
    viewer.dims.set_current_step(0, 1)  # the frame at 4 µm
    viewer.layers.selection.active = viewer.layers["two frames defocus map"]
    viewer.reset_view()
    shoot(viewer, "focal_error_pair.png")
    res = w.result.autofocus
    print(res.format_table(1))
    print("true defocus of frame 1 (µm):\n", np.round(focus[1] - best, 2))
    print("single-frame predictions of frame 1 (µm):\n", np.round(res.single_frame_um[1], 2))
    viewer.close()


def focal_error_512(napari) -> None:
    """``focal_error_512.png``: one 512-px frame of the tilted tissue (each region sharpest
    at its own focus, the frame at 2 µm): every one of the nine regions gets a value."""
    from napari_gplws.sim.defocus_tiles import DefocusSimulator
    from napari_gplws.sim.psf_bank import psf_bank

    best = 2.0 + 0.6 * (np.arange(3)[None, :] - 1) + 0.3 * (np.arange(3)[:, None] - 1)
    bank = psf_bank(n_configs=1, seed=0, defocus_max_um=4.0, step_um=0.25, size_px=113)
    sim = DefocusSimulator(
        bank, ("he_tissue",), p_jpeg=0.0, p_partial=0.0, p_phase=0.0, defocus_max_um=4.0
    )
    rng = np.random.default_rng(3)
    frame = np.zeros((3 * 171, 3 * 171), np.uint8)
    for i in range(3):
        for j in range(3):
            tiles, _, _ = sim.render_field(rng, [2.0 - best[i, j]], tile_px=171, aberration=0)
            frame[171 * i : 171 * (i + 1), 171 * j : 171 * (j + 1)] = tiles[0]
    frame = frame[:512, :512]
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 950)
    viewer.add_image(
        frame, name="tissue 512 px", scale=(0.25, 0.25), units=("µm", "µm"),
        metadata={"pixel_size_um": 0.25},
    )  # fmt: skip
    _, w = viewer.window.add_plugin_dock_widget("napari-gplws", "Focal error map")
    w.device_combo.setCurrentText("cpu")
    done: list[str] = []
    w.finished.connect(done.append)
    w.run_button.click()
    wait_for(lambda: bool(done))
    viewer.layers.selection.active = viewer.layers["tissue 512 px defocus map"]
    viewer.reset_view()
    shoot(viewer, "focal_error_512.png")
    print("true defocus (µm):\n", np.round(2.0 - best, 2))
    print(w.result.autofocus.format_table(0))
    viewer.close()


def main() -> int:
    warnings.filterwarnings("ignore", message=".*PyQt5 backend.*")
    warnings.filterwarnings("ignore", message=".*System theme detection.*")
    import napari

    OUT.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1100, 750)
    sample_and_depth(viewer)
    shoot(viewer, "sample_depth.png")
    viewer.close()
    widgets(napari)
    gt_editor(napari)
    focal_error_map(napari)
    focal_error_pair(napari)
    focal_error_512(napari)
    return 0


if __name__ == "__main__":
    sys.exit(main())
