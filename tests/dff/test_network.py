"""Inference engine: devices, tiling without seams, progress/cancel, dtypes and units, weights."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_gplws._shared.device import resolve_device
from napari_gplws.dff._tiles import auto_tile_size, tile_grid
from napari_gplws.dff.network import predict_depth
from napari_gplws.errors import Cancelled, ModelError, StackError
from napari_gplws.models.gplws import GPLWSNet
from napari_gplws.models.registry import has_default_weights, save_gplws, weights_path
from napari_gplws.stack import FocalStack


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """The packaged weights when present (a real, trained network), else random ones."""
    if has_default_weights("gplws"):
        return str(weights_path())
    torch.manual_seed(0)
    net = GPLWSNet()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    path = tmp_path_factory.mktemp("w") / "random.safetensors"
    return str(save_gplws(net.eval(), path, {"name": "random"}))


@pytest.fixture(scope="module")
def stack():
    from napari_gplws.sim.focus_stacks import synthetic_stack

    return synthetic_stack(family="caps", n_frames=10, shape=(150, 170), depth_range_um=(3.0, 21.0), seed=11)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda", "mps")
    with pytest.raises(ModelError, match="Unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA"):
            resolve_device("cuda")


def test_tile_grid_covers_everything() -> None:
    assert tile_grid(100, 128, 16) == [(0, 100)]
    for length in (300, 333, 1000):
        spans = tile_grid(length, 128, 32, align=32)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(a % 32 == 0 for a, _ in spans)
        assert all(s1 - a2 >= 32 for (_, s1), (a2, _) in itertools.pairwise(spans))  # overlap
    assert 192 <= auto_tile_size(30, budget_bytes=1 << 30) <= 2048
    assert auto_tile_size(30, budget_bytes=1 << 30) % 32 == 0


def test_units_dtype_and_shapes(stack, weights) -> None:
    r = predict_depth(stack.stack, device="cpu", weights=weights)
    h, w = stack.stack.shape_yx
    assert r.depth.shape == r.index.shape == r.confidence.shape == (h, w)
    assert r.units == "µm" and r.device == "cpu"
    lo, hi = stack.stack.focus_um.min(), stack.stack.focus_um.max()
    assert lo - 1e-3 <= r.depth.min() and r.depth.max() <= hi + 1e-3
    assert r.aif.dtype == stack.stack.frames.dtype and r.aif.shape == (h, w)
    assert r.confidence.min() >= 0 and r.confidence.max() <= 1
    assert {"network", "total"} <= set(r.timings)
    # frame units when positions are unknown: depth equals the index
    r2 = predict_depth(FocalStack(stack.stack.frames), device="cpu", weights=weights)
    assert r2.units == "frame"
    np.testing.assert_allclose(r2.depth, r2.index, atol=1e-4)


def test_select_aif_takes_input_values_and_rgb(weights) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 65535, (6, 40, 36, 3), dtype=np.uint16)
    r = predict_depth(FocalStack(frames), device="cpu", aif_mode="select", weights=weights)
    assert r.aif.dtype == np.uint16 and r.aif.shape == (40, 36, 3)
    k = np.clip(np.rint(r.index).astype(int), 0, 5)
    yy, xx = np.indices((40, 36))
    np.testing.assert_array_equal(r.aif, frames[k, yy, xx])


def test_tiled_matches_whole_without_seams(weights) -> None:
    from napari_gplws.sim.focus_stacks import synthetic_stack

    s = synthetic_stack(family="caps", n_frames=10, shape=(256, 320), depth_range_um=(3.0, 21.0), seed=11)
    whole = predict_depth(s.stack, device="cpu", weights=weights, tile_size=1024)
    calls: list[tuple[int, int]] = []
    tiled = predict_depth(
        s.stack, device="cpu", weights=weights, tile_size=192, overlap=96,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert tiled.params["tiles"] > 1 and whole.params["tiles"] == 1
    passes = tiled.params["tiles"] * tiled.params["tta"]  # every tile of every view
    assert calls[-1] == (passes, passes)
    span = float(s.stack.focus_um.max() - s.stack.focus_um.min())
    diff = np.abs(tiled.depth - whole.depth)
    assert np.percentile(diff, 99) < 0.01 * span
    assert diff.mean() < 0.002 * span


def test_cancel_between_tiles(stack, weights) -> None:
    seen = []

    def cancel() -> bool:
        return len(seen) >= 1

    with pytest.raises(Cancelled):
        predict_depth(
            stack.stack, device="cpu", weights=weights, tile_size=64, overlap=16,
            progress=lambda d, t: seen.append(d), cancel=cancel,
        )
    assert seen == [1]


@pytest.mark.skipif(not has_default_weights("gplws"), reason="packaged weights not trained yet")
def test_packaged_weights_beat_classical_on_small_fixed_set() -> None:
    from napari_gplws.dff.classical import depth_from_focus
    from napari_gplws.evaluation.metrics import depth_metrics
    from napari_gplws.sim.focus_stacks import synthetic_stack
    from napari_gplws.sim.heights import HEIGHT_FAMILIES

    net_rmse, sml_rmse, net_bump, sml_bump = [], [], [], []
    for i, fam in enumerate(HEIGHT_FAMILIES):
        s = synthetic_stack(
            family=fam, n_frames=16, shape=(96, 96), depth_range_um=(5.0, 35.0),
            bit_depth=16 if i % 2 else 8, seed=2_000_000 + i,
        )
        a = depth_metrics(predict_depth(s.stack, device="cpu").depth, s.depth_um)
        b = depth_metrics(depth_from_focus(s.stack, measure="sml").depth, s.depth_um)
        net_rmse.append(a["RMSE"])
        sml_rmse.append(b["RMSE"])
        net_bump.append(a["Bumpiness"])
        sml_bump.append(b["Bumpiness"])
    assert np.mean(net_rmse) < 0.8 * np.mean(sml_rmse)
    assert np.mean(net_bump) <= np.mean(sml_bump)


@pytest.mark.skipif(not has_default_weights("gplws"), reason="packaged weights not trained yet")
def test_committed_weights_reach_the_figures_their_card_states() -> None:
    """Render the card's held-out benchmark again and run the default inference on it: the
    committed weights must give the card's RMSE (this also catches a simulator or inference
    change that silently moves the figures), and stay within 0.60× the best classical
    measure's error."""
    from napari_gplws.dff.network import DEFAULT_TTA
    from napari_gplws.evaluation.depth_benchmark import evaluate
    from napari_gplws.models.registry import model_card

    bench = model_card("gplws_default")["benchmark"]
    assert bench["inference_default_tta"] == DEFAULT_TTA  # the card describes today's default
    rows = evaluate(methods=["gplws", "rdf"], device="cpu", n=30)
    stated = bench["rows"]
    assert rows["gplws"]["RMSE"] == pytest.approx(stated["gplws"]["RMSE"], rel=0.01)
    assert rows["rdf"]["RMSE"] == pytest.approx(stated["rdf"]["RMSE"], rel=1e-3)
    assert rows["gplws"]["RMSE"] <= 0.60 * rows["rdf"]["RMSE"]
    assert rows["gplws"]["Bumpiness"] < rows["rdf"]["Bumpiness"]


def test_onnx_export_matches_pytorch(tmp_path, weights) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from napari_gplws.models.onnx import export_onnx
    from napari_gplws.models.registry import load_gplws

    path = export_onnx(tmp_path / "gplws.onnx", weights=weights)
    x = torch.rand(1, 1, 7, 48, 64)
    with torch.inference_mode():
        ref = load_gplws(weights)(x).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": x.numpy()})[0]
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < 1e-3


def test_evaluate_methods_table(weights) -> None:
    from types import SimpleNamespace

    from napari_gplws.evaluation.depth_benchmark import evaluate
    from napari_gplws.evaluation.metrics import format_table
    from napari_gplws.sim.focus_stacks import synthetic_stack

    samples = []
    for i, fam in enumerate(("plane", "waves")):
        s = synthetic_stack(family=fam, n_frames=8, shape=(48, 48), depth_range_um=(2.0, 16.0), seed=3_000_100 + i)
        samples.append(SimpleNamespace(stack=s.stack, gt=s.depth_um, mask=None))
    rows = evaluate(samples, ["gplws", "sml"], device="cpu", weights=weights)
    assert set(rows) == {"gplws", "sml"}
    assert {"RMSE", "MAE", "AbsRel", "SqRel", "Bumpiness", "seconds"} <= set(rows["gplws"])
    table = format_table(rows, ("RMSE", "Bumpiness"))
    assert table.splitlines()[0] == "| method | RMSE ↓ | Bump ↓ |" and "| sml |" in table


# --- GPU fast path options (batched tiles, autocast precision, torch.compile) -------------
def _small_stack():
    from napari_gplws.sim.focus_stacks import synthetic_stack

    return synthetic_stack(family="waves", n_frames=10, shape=(200, 180), seed=11).stack


def test_batched_tiles_match_one_tile_at_a_time():
    s = _small_stack()
    one = predict_depth(s, device="cpu", tile_size=96, overlap=32, tile_batch=1)
    many = predict_depth(s, device="cpu", tile_size=96, overlap=32, tile_batch=5)
    assert one.params["tiles"] > 4 and many.params["tile_batch"] == 5
    np.testing.assert_allclose(many.depth, one.depth, atol=1e-4)
    np.testing.assert_allclose(many.confidence, one.confidence, atol=1e-5)
    # integer AiF: float sums in another order may round the other way by one grey level
    assert np.abs(many.aif.astype(int) - one.aif.astype(int)).max() <= 1


def test_bf16_autocast_on_cpu_stays_within_one_percent_of_fp32():
    s = _small_stack()
    fp32 = predict_depth(s, device="cpu", precision="fp32")
    bf16 = predict_depth(s, device="cpu", precision="bf16")
    assert fp32.params["precision"] == "fp32" and bf16.params["precision"] == "bfloat16"
    span = float(np.ptp(fp32.depth))
    assert np.abs(bf16.depth - fp32.depth).mean() < 0.01 * span
    assert not np.array_equal(bf16.depth, fp32.depth)  # autocast really ran


def test_precision_names_are_checked():
    from napari_gplws.dff.network import resolve_precision
    from napari_gplws.errors import ModelError
    from napari_gplws.models.gplws import cpu_has_bf16

    # auto on the CPU: bf16 where the CPU has native bfloat16 instructions, else fp32
    assert resolve_precision("auto", "cpu") is (torch.bfloat16 if cpu_has_bf16() else None)
    assert resolve_precision("fp32", "cpu") is None
    with pytest.raises(ModelError, match="fp16.*CUDA"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ModelError, match="Unknown precision"):
        resolve_precision("fp8", "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp16", "bf16", "auto"])
def test_cuda_fast_path_matches_cpu(precision):
    s = _small_stack()
    cpu = predict_depth(s, device="cpu")
    gpu = predict_depth(s, device="cuda", precision=precision, tile_size=96, overlap=32)
    assert gpu.device.startswith("cuda") and gpu.params["precision"] != "fp32"
    span = float(np.ptp(cpu.depth))
    assert np.abs(gpu.depth - cpu.depth).mean() < 0.01 * span
    assert np.abs(gpu.aif.astype(float) - cpu.aif.astype(float)).mean() < 1.0


@pytest.mark.slow
@pytest.mark.skipif(
    not (torch.cuda.is_available() or os.environ.get("GPLWS_SLOW_TESTS")),
    reason="compiling takes minutes on a CPU; runs with CUDA or GPLWS_SLOW_TESTS=1",
)
def test_torch_compile_gives_the_same_depth():
    s = _small_stack()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    eager = predict_depth(s, device=dev, precision="fp32", tile_size=128, overlap=32)
    compiled = predict_depth(s, device=dev, precision="fp32", tile_size=128, overlap=32, compile=True)
    assert compiled.params["compiled"] is True
    np.testing.assert_allclose(compiled.depth, eager.depth, atol=1e-3)


def test_test_time_augmentation_averages_views_back_in_place():
    from napari_gplws.sim.focus_stacks import synthetic_stack

    syn = synthetic_stack(family="plane", n_frames=10, shape=(96, 128), seed=5)
    plain = predict_depth(syn.stack, device="cpu", tta=1)
    both = predict_depth(syn.stack, device="cpu", tta=8)
    assert both.depth.shape == (96, 128) and both.params["tta"] == 8
    # a tilted plane is not symmetric: views put back wrongly would destroy the correlation
    assert np.corrcoef(both.depth.ravel(), syn.depth_um.ravel())[0, 1] > 0.95
    assert np.abs(both.depth - plain.depth).mean() < 0.1 * float(np.ptp(plain.depth))
    with pytest.raises(StackError, match="tta"):
        predict_depth(syn.stack, device="cpu", tta=3)
