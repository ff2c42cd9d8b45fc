"""Wide-field autofocus: tiling, blank tiles, 3×3 maps with true defocus from a synthetic
stack, the heatmap and the command line. A tiny untrained network stands in for the
packaged weights, so these tests check the mechanics, not the accuracy (see test_ldse)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_gplws.cli.autofocus import add_autofocus_arguments, cli_autofocus
from napari_gplws.defocus import (
    AutofocusResult,
    autofocus,
    best_focus_from_curve,
    content_fraction,
    cut_tiles,
    plot_heatmap,
    predict_defocus,
    tile_origins,
)
from napari_gplws.errors import Cancelled, StackError
from napari_gplws.stack import FocalStack

BEST_UM = np.array([[2.6, 3.0, 3.4], [2.8, 3.2, 3.6], [2.4, 3.0, 3.3]])
FOCUS_UM = np.arange(7, dtype=float)  # 0 … 6 µm


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from napari_gplws.models.ldse import LDSEConfig, LDSENet
    from napari_gplws.models.registry import save_ldse

    torch.manual_seed(0)
    net = LDSENet(LDSEConfig(stem=8, growth=(4, 4, 4), layers=(1, 1, 1))).eval()
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    return save_ldse(net, path, {"name": "tiny", "optics": {"pixel_size_um": 0.25}})


@pytest.fixture(scope="module")
def region_stack() -> FocalStack:
    """672×672 stack: a 3×3 grid of 224 px regions, region (i, j) sharpest at BEST_UM[i, j]."""
    from napari_gplws.sim.defocus_tiles import DefocusSimulator
    from napari_gplws.sim.psf_bank import psf_bank

    bank = psf_bank(n_configs=1, seed=0, defocus_max_um=4.0, step_um=0.25, size_px=33)
    # Absorbing specimen only: the focus curves of phase objects dip at focus (see docs).
    sim = DefocusSimulator(
        bank, ("he_tissue",), p_jpeg=0.0, p_partial=0.0, p_phase=0.0, defocus_max_um=4.0
    )
    rng = np.random.default_rng(3)
    frames = np.zeros((len(FOCUS_UM), 672, 672), np.uint8)
    for i in range(3):
        for j in range(3):
            t, _, _ = sim.render_field(rng, FOCUS_UM - BEST_UM[i, j], tile_px=224, aberration=0)
            frames[:, 224 * i : 224 * (i + 1), 224 * j : 224 * (j + 1)] = t
    return FocalStack(frames, focus_um=FOCUS_UM, source="synthetic regions")


def test_tiles_cover_the_frame_with_edge_aligned_last_tiles() -> None:
    o = tile_origins((500, 700), 224)
    assert {int(y) for y in o[:, 0]} == {0, 224, 276} and {int(x) for x in o[:, 1]} == {
        0,
        224,
        448,
        476,
    }
    assert (
        len(tile_origins((500, 700), 224, stride=112)) == 4 * 6
    )  # y: 0 112 224 276; x: 0 … 448 476
    frame = np.arange(500 * 700, dtype=np.float32).reshape(500, 700)
    tiles = cut_tiles(frame, o, 224)
    assert tiles.shape == (12, 224, 224)
    np.testing.assert_array_equal(tiles[-1], frame[276:, 476:])
    assert cut_tiles(np.zeros((100, 150, 3), np.uint8), tile_origins((100, 150)), 224).shape == (
        1,
        224,
        224,
        3,
    )
    with pytest.raises(ValueError):
        tile_origins((10, 10), 224, stride=0)


def _half_background(dark: bool) -> np.ndarray:
    """448×896 uint8 frame: textured specimen on the left half, flat background (+ noise) right."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    tex = ndi.gaussian_filter(rng.random((448, 448)), 3.0)
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    bg = 12.0 if dark else 215.0
    left = bg + (150.0 if dark else -150.0) * tex
    frame = np.concatenate([left, np.full((448, 448), bg)], axis=1) + rng.normal(0, 2.0, (448, 896))
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("dark", [False, True])
def test_blank_tiles_are_rejected_and_give_no_estimate(tiny_weights: Path, dark: bool) -> None:
    frame = _half_background(dark)
    tiles = cut_tiles(frame, tile_origins(frame.shape, 224), 224)
    cf = content_fraction(tiles)
    left = tile_origins(frame.shape, 224)[:, 1] < 448
    assert cf[left].min() > 0.5 and cf[~left].max() < 0.05
    res = autofocus(frame, grid=(1, 2), device="cpu", weights=tiny_weights)
    assert res.n_tiles.tolist() == [[[4, 0]]]
    assert np.isfinite(res.predicted_um[0, 0, 0])
    assert np.isnan(res.predicted_um[0, 0, 1]) and np.isnan(res.spread_um[0, 0, 1])  # never 0
    assert np.isnan(res.tile_defocus_um[0, ~left]).all()
    assert res.magnitude_um[0, 0, 0] >= abs(res.predicted_um[0, 0, 0]) - 1e-6
    assert np.isnan(res.magnitude_um[0, 0, 1])
    assert res.true_um is None and res.error_um is None
    row = res.table()[1]
    assert row["predicted_um"] is None and row["n_tiles"] == 0


def test_predict_defocus_api(tiny_weights: Path) -> None:
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 255, (5, 224, 224), dtype=np.uint8)
    calls: list[tuple[int, int]] = []
    out = predict_defocus(
        tiles,
        weights=tiny_weights,
        device="cpu",
        batch_size=2,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert out.shape == (5,) and out.dtype == np.float32 and np.isfinite(out).all()
    assert calls[-1] == (3, 3)
    signed, magnitude = predict_defocus(
        tiles, weights=tiny_weights, device="cpu", return_magnitude=True
    )
    np.testing.assert_allclose(signed, out, atol=1e-6)
    assert np.all(magnitude >= np.abs(signed) - 1e-6)
    rgb = np.repeat(tiles[..., None], 3, axis=-1)
    np.testing.assert_allclose(
        predict_defocus(rgb, weights=tiny_weights, device="cpu"), out, atol=1e-4
    )
    assert predict_defocus(tiles[0], weights=tiny_weights, device="cpu").shape == (1,)
    blank = np.full((2, 224, 224), 128, np.uint8)
    assert np.isnan(
        predict_defocus(blank, weights=tiny_weights, device="cpu", reject_blank=True)
    ).all()
    with pytest.raises(StackError):
        predict_defocus(np.zeros((2, 16, 16)), weights=tiny_weights)
    with pytest.raises(Cancelled):
        predict_defocus(tiles, weights=tiny_weights, device="cpu", cancel=lambda: True)


def test_best_focus_from_a_focus_curve() -> None:
    pos = np.array([10.0, 8.0, 6.0, 4.0, 2.0])  # decreasing positions are fine
    curve = np.exp(-0.5 * ((pos - 5.2) / 1.5) ** 2)
    assert best_focus_from_curve(curve, pos) == pytest.approx(5.2, abs=1e-6)
    assert np.isnan(best_focus_from_curve(np.array([5.0, 4, 3, 2, 1]), pos))  # peak not bracketed


def test_stack_mode_gives_true_defocus_and_error_per_region(
    region_stack: FocalStack, tiny_weights: Path
) -> None:
    seen: list[tuple[int, int]] = []
    res = autofocus(
        region_stack, device="cpu", weights=tiny_weights, progress=lambda d, t: seen.append((d, t))
    )
    n = region_stack.n_frames
    assert res.predicted_um.shape == res.true_um.shape == res.error_um.shape == (n, 3, 3)
    assert res.n_tiles.min() == 1 and res.best_focus_um.shape == (3, 3)
    # Each region's best focus is recovered from its focus curve.
    np.testing.assert_allclose(res.best_focus_um, BEST_UM, atol=0.4)
    np.testing.assert_allclose(res.true_um, FOCUS_UM[:, None, None] - res.best_focus_um[None])
    np.testing.assert_allclose(res.error_um, res.predicted_um - res.true_um)
    assert seen[-1][0] == seen[-1][1]
    rows = res.table()
    assert len(rows) == n * 9 and {"true_um", "error_um", "best_focus_um", "focus_um"} <= set(
        rows[0]
    )
    assert "predicted / true / error" in res.format_table(3)
    one = autofocus(region_stack, frame=3, device="cpu", weights=tiny_weights)
    assert one.predicted_um.shape == (1, 3, 3) and one.frames.tolist() == [3]
    np.testing.assert_allclose(one.true_um[0], res.true_um[3])
    with pytest.raises(StackError, match="out of range"):
        autofocus(region_stack, frame=n, weights=tiny_weights)


def test_direction_confidence_marks_regions_whose_sign_is_unsure(
    region_stack: FocalStack, tiny_weights: Path, tmp_path: Path
) -> None:
    import dataclasses

    from napari_gplws.defocus import CONFIDENT_DIRECTION

    res = autofocus(region_stack, frame=2, device="cpu", weights=tiny_weights)
    c0 = res.direction_confidence
    assert c0 is not None and c0.shape == (1, 3, 3) and np.nanmax(c0) <= 1.0
    pred = np.array([[[2.0, -0.5, np.nan], [1.0, 0.0, -3.0], [0.2, -0.9, 0.0]]])
    mag = np.array([[[2.5, 2.0, np.nan], [1.0, 1.0, 3.0], [1.0, 1.0, 0.0]]])
    r = dataclasses.replace(res, predicted_um=pred, magnitude_um=mag)
    np.testing.assert_allclose(
        r.direction_confidence[0],
        [[0.8, 0.25, np.nan], [1.0, 0.0, 1.0], [0.2, 0.9, 0.0]],
        atol=1e-9,
    )
    assert CONFIDENT_DIRECTION == 0.5
    text = r.format_table()
    assert "-0.50?" in text and "+0.20?" in text and "-0.90?" not in text
    assert "+2.00?" not in text and "+2.00" in text and "direction uncertain" in text
    rows = r.table()
    assert rows[1]["direction_confidence"] == pytest.approx(0.25)
    assert rows[2]["direction_confidence"] is None  # no estimate, no confidence
    d = json.loads(r.to_json(tmp_path / "c.json").read_text(encoding="utf-8"))
    assert d["direction_confidence"][0][1] == [1.0, 0.0, 1.0]
    assert d["confident_direction_threshold"] == CONFIDENT_DIRECTION


def test_heatmap_and_files(region_stack: FocalStack, tiny_weights: Path, tmp_path: Path) -> None:
    res = autofocus(region_stack, frame=2, device="cpu", weights=tiny_weights)
    png = plot_heatmap(res, tmp_path / "h.png", image=region_stack.frames[2])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    d = json.loads(res.to_json(tmp_path / "a.json").read_text(encoding="utf-8"))
    assert np.array(d["error_um"], dtype=float).shape == (1, 3, 3) and d["units"] == "µm"
    lines = res.to_csv(tmp_path / "a.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + 9 and lines[0].startswith("frame,focus_um,row,col,predicted_um")


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_autofocus_arguments(p)
    return p.parse_args(argv)


def test_cli_end_to_end(
    region_stack: FocalStack, tiny_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import imageio.v3 as iio

    stack_path = tmp_path / "stack.npy"
    np.save(stack_path, region_stack.frames)
    out = tmp_path / "out"
    args = _parse(
        [
            str(stack_path),
            "--focus-step",
            "1",
            "-o",
            str(out),
            "--weights",
            str(tiny_weights),
            "--device",
            "cpu",
            "-q",
        ]
    )
    assert cli_autofocus(args) == 0
    text = capsys.readouterr().out
    assert "predicted / true / error" in text and "mean |error|" in text
    assert {p.name for p in out.iterdir()} >= {"autofocus.csv", "autofocus.json", "autofocus.png"}
    assert (
        len((out / "autofocus.csv").read_text(encoding="utf-8").splitlines())
        == 1 + 9 * region_stack.n_frames
    )
    # Single image, one frame: predicted only; earlier outputs are backed up, not overwritten.
    img = tmp_path / "frame.png"
    iio.imwrite(img, region_stack.frames[3])
    args = _parse(
        [str(img), "-o", str(out), "--weights", str(tiny_weights), "--device", "cpu", "-q"]
    )
    assert cli_autofocus(args) == 0
    text = capsys.readouterr().out
    assert "predicted defocus" in text and "backup" in text
    d = json.loads((out / "autofocus.json").read_text(encoding="utf-8"))
    assert "true_um" not in d and np.array(d["predicted_um"], dtype=float).shape == (1, 3, 3)
    assert any(p.name.startswith("backup-") for p in out.iterdir())


def test_cli_combines_two_frames(
    region_stack: FocalStack, tiny_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack_path = tmp_path / "pair.npy"
    np.save(stack_path, region_stack.frames[[0, 4]])
    out = tmp_path / "out"
    argv = [str(stack_path), "--focus-positions", "0,4", "-o", str(out), "--combine-frames"]
    args = _parse(argv + ["--weights", str(tiny_weights), "--device", "cpu", "-q"])
    assert args.combine_frames
    assert cli_autofocus(args) == 0
    assert "direction from all 2 frames" in capsys.readouterr().out
    d = json.loads((out / "autofocus.json").read_text(encoding="utf-8"))
    pred = np.array(d["predicted_um"], dtype=float)
    best = np.array(d["fitted_best_focus_um"], dtype=float)
    # Whatever the (untrained) network says, the two frames share one fitted focus.
    np.testing.assert_allclose(pred[0] - pred[1], -4.0, atol=1e-6)
    np.testing.assert_allclose(pred[0], 0.0 - best, atol=1e-6)
    rows = (out / "autofocus.csv").read_text(encoding="utf-8").splitlines()
    assert "single_frame_um" in rows[0] and "fitted_best_focus_um" in rows[0]
    with pytest.raises(StackError, match="no focus positions"):
        cli_autofocus(
            _parse([str(stack_path), "--combine-frames", "--weights", str(tiny_weights), "-q"])
        )


def test_result_type_is_exported() -> None:
    assert AutofocusResult.__dataclass_fields__["predicted_um"]


def test_combined_frames_take_the_direction_from_the_focus_positions(
    region_stack: FocalStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A stand-in network that knows how far each region is but not the direction (or gets
    it wrong): combining two frames 2 µm apart must still give every region's signed
    defocus and best focus, though neither frame brackets the focus."""
    import napari_gplws.defocus.analyse as af

    two = FocalStack(region_stack.frames[[0, 2]], focus_um=FOCUS_UM[[0, 2]], source="two")
    region = tile_origins(two.frames.shape[1:3], 224, 224) // 224
    true = two.focus_um[:, None, None] - BEST_UM[None]
    state = {"frame": 0, "sign": 0.0}

    def fake_predict(tiles, **kw):
        z = true[state["frame"] % 2, region[:, 0], region[:, 1]].astype(np.float32)
        state["frame"] += 1
        return state["sign"] * np.abs(z) * np.sign(z), np.abs(z)

    monkeypatch.setattr(af, "predict_defocus", fake_predict)
    single = autofocus(two, device="cpu")
    res = autofocus(two, device="cpu", combine_frames=True)
    assert np.isnan(single.true_um).all()  # two frames cannot bracket a focus curve's peak
    assert res.combined and not single.combined
    np.testing.assert_allclose(res.fitted_best_focus_um, BEST_UM, atol=1e-5)
    np.testing.assert_allclose(res.predicted_um, true, atol=1e-5)
    np.testing.assert_allclose(res.single_frame_um, single.predicted_um)
    far = np.abs(true) >= 1.5
    assert (res.direction_confidence[far] > 0.5).all()  # a 2 µm step settles these
    table = res.format_table(0)
    assert "direction from all 2 frames" in table and "/ –" not in table  # no truth columns
    rows = res.table()
    assert rows[0]["fitted_best_focus_um"] == pytest.approx(BEST_UM[0, 0], abs=1e-5)
    d = json.loads(res.to_json(tmp_path / "c.json").read_text(encoding="utf-8"))
    assert d["combined_frames"] is True and len(d["single_frame_um"]) == 2

    # A network whose every frame points the wrong way, 30 % sure: the geometry wins.
    state["sign"] = -0.3
    wrong = autofocus(two, device="cpu")
    assert (np.sign(wrong.predicted_um) == -np.sign(true)).all()
    fixed = autofocus(two, device="cpu", combine_frames=True)
    sure = np.abs(true) >= 1.0
    assert (np.sign(fixed.predicted_um[sure]) == np.sign(true[sure])).all()
    np.testing.assert_allclose(fixed.fitted_best_focus_um, BEST_UM, atol=0.45)


@pytest.mark.parametrize(
    "kwargs, why",
    [
        ({"frame": 1}, "only frame 1 was chosen"),
        ({"focus_positions": None}, "no focus positions"),
    ],
)
def test_combining_frames_refuses_what_it_cannot_combine(
    region_stack: FocalStack, tiny_weights: Path, kwargs: dict, why: str
) -> None:
    data = region_stack if kwargs.get("focus_positions", 0) is not None else region_stack.frames
    kwargs = {k: v for k, v in kwargs.items() if k != "focus_positions"}
    with pytest.raises(StackError, match=why):
        autofocus(data, weights=tiny_weights, combine_frames=True, **kwargs)
    with pytest.raises(StackError, match="the input is one image"):
        autofocus(region_stack.frames[0], weights=tiny_weights, combine_frames=True)
