"""Where GPLWS-Net's training batches come from, and its fixed validation stacks.

:class:`TrainingSources` draws each batch from one of three sources: the fast renderer of
:mod:`.gplws_data` (:class:`~.gplws_data.SyntheticFocusDataset`), a small refreshed pool of
stacks from the project simulator (:class:`SynthPool`, :mod:`napari_gplws.sim.focus_stacks`)
and, optionally, a Micro 3D-layout folder (:class:`napari_gplws.io.micro3d.Micro3DDataset`).
:func:`validation_set` renders the stacks validation runs on (seeds never used in training).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from napari_gplws.training.gplws import TrainConfig

__all__ = ["VAL_SEED", "SynthPool", "TrainingSources", "validation_set"]

#: Seeds used for validation stacks (training uses ``seed`` and its successors, far below).
VAL_SEED = 900_000


class SynthPool:
    """Stacks from :func:`napari_gplws.sim.focus_stacks.random_training_stack`, refreshed as used.

    Pool stacks have ``n_frames[1]`` frames; each batch takes, per sample, a random crop, a
    random frame stride (1–3, i.e. a coarser focus step) and a sub-range of ``n`` frames
    (one ``n`` per batch) placed over the surface, plus rotations and reversed order.
    """

    def __init__(
        self, size: int, seed: int, n_frames: tuple[int, int], shape: int = 128, refresh: int = 2
    ) -> None:
        # Fail early when the simulator is missing.
        from napari_gplws.sim import focus_stacks  # noqa: F401

        self.rng = np.random.default_rng(seed + 17)
        self.n_frames, self.shape, self.refresh = n_frames, shape, refresh
        self.pool = [self._make() for _ in range(size)]

    def _make(self) -> Any:
        from napari_gplws.sim.focus_stacks import random_training_stack
        from napari_gplws.stack import position_to_index
        from napari_gplws.training.gplws_data import TrainingSample

        nmax = self.n_frames[1]
        s = random_training_stack(self.rng, shape=(self.shape, self.shape), n_frames=(nmax, nmax))
        idx = position_to_index(s.depth_um, s.stack.positions).astype(np.float32)
        return TrainingSample(np.asarray(s.stack.frames), idx, s.params.family)

    def batch(self, batch_size: int, crop: int, n: int) -> list[Any]:
        """``batch_size`` samples of ``n`` frames cropped to ``crop`` px (see the class notes)."""
        from napari_gplws.training.gplws_data import TrainingSample

        rng = self.rng
        for _ in range(self.refresh):
            self.pool[int(rng.integers(len(self.pool)))] = self._make()
        out = []
        for _ in range(batch_size):
            s = self.pool[int(rng.integers(len(self.pool)))]
            nmax = s.frames.shape[0]
            stride = int(rng.integers(1, max(1, (nmax - 1) // max(n - 1, 1)) + 1))
            stride = min(stride, 3)
            span = (n - 1) * stride
            h, w = s.depth_index.shape
            c = min(crop, h, w)
            y0, x0 = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
            d = s.depth_index[y0 : y0 + c, x0 : x0 + c]
            lo, hi = float(d.min()), float(d.max())
            a, b = max(0.0, hi - span), min(lo, float(nmax - 1 - span))
            start = int(round(rng.uniform(a, b))) if a <= b else int(rng.integers(0, nmax - span))
            start = int(np.clip(start, 0, nmax - 1 - span))
            f = s.frames[start : start + span + 1 : stride, y0 : y0 + c, x0 : x0 + c]
            d = np.clip((d - start) / stride, 0, n - 1)
            k = int(rng.integers(4))
            f, d = np.rot90(f, k, axes=(1, 2)), np.rot90(d, k)
            if rng.random() < 0.5:
                f, d = f[:, :, ::-1], d[:, ::-1]
            if rng.random() < 0.5:
                f, d = f[::-1], (n - 1) - d
            out.append(
                TrainingSample(
                    np.ascontiguousarray(f), np.ascontiguousarray(d, dtype=np.float32), s.family
                )
            )
        return out


class TrainingSources:
    """Draws training batches from the renderer, the synth pool and a Micro 3D folder."""

    def __init__(self, cfg: TrainConfig, log: Callable[[str], None]) -> None:
        from napari_gplws.io.micro3d import Micro3DDataset
        from napari_gplws.training.gplws_data import RenderConfig, SyntheticFocusDataset

        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed + 1)
        rc = RenderConfig(n_frames=tuple(cfg.n_frames), size=tuple(cfg.size))  # type: ignore[arg-type]
        self.render = SyntheticFocusDataset(rc, seed=cfg.seed)
        self.pool = None
        if cfg.synth_fraction > 0:
            try:
                t0 = time.perf_counter()
                n_frames = tuple(cfg.n_frames)
                self.pool = SynthPool(cfg.synth_pool, cfg.seed, n_frames)  # type: ignore[arg-type]
                seconds = time.perf_counter() - t0
                log(f"synth pool of {cfg.synth_pool} stacks built in {seconds:.1f} s")
            except Exception as exc:  # noqa: BLE001 - the renderer alone still trains
                log(
                    f"synth pool unavailable ({type(exc).__name__}: {exc}); using the renderer only"
                )
        self.micro = None
        if cfg.micro3d:
            self.micro = Micro3DDataset(
                cfg.micro3d,
                cfg.gt_pattern,
                cfg.gt_units,
                cfg.gt_scale,
                split_file=cfg.split_file,
                split="train",
            )
            log(f"Micro 3D dataset '{cfg.micro3d}': {len(self.micro)} training samples")

    def state(self) -> dict[str, Any]:
        """The random-generator states (saved in checkpoints)."""
        return {"rng": self.rng.bit_generator.state, "render": self.render.rng.bit_generator.state}

    def set_state(self, st: dict[str, Any]) -> None:
        """Restore the random-generator states of :meth:`state` (on ``resume``)."""
        self.rng.bit_generator.state = st["rng"]
        self.render.rng.bit_generator.state = st["render"]

    def batch(self) -> list[Any]:
        """One batch of :class:`~.gplws_data.TrainingSample` (one stack length and crop)."""
        cfg, rng = self.cfg, self.rng
        crop = int(rng.choice(list(cfg.size_choices)))
        n = int(rng.choice(list(cfg.n_choices)))
        if self.micro is not None and rng.random() < cfg.micro3d_fraction:
            idx = rng.integers(0, len(self.micro), cfg.batch_size)
            from napari_gplws.training.gplws_data import micro3d_training_sample

            out = [micro3d_training_sample(self.micro, int(i), rng, crop) for i in idx]
            return [s for s in out if s.frames.shape == out[0].frames.shape]
        if self.pool is not None and rng.random() < cfg.synth_fraction:
            return self.pool.batch(cfg.batch_size, crop, n)
        return self.render.batch(cfg.batch_size, n_frames=n, size=crop)


def validation_set(n: int = 24, seed: int = VAL_SEED) -> list[Any]:
    """Fixed validation stacks (seeds never used in training), 96×96, N in {10, 20, 32, 48}.

    Half come from the training renderer, half from :mod:`napari_gplws.sim.focus_stacks`
    when it is available.
    """
    from napari_gplws.training.gplws_data import RenderConfig, SyntheticFocusDataset, TrainingSample

    ds = SyntheticFocusDataset(RenderConfig(), seed=seed)
    n_synth = n // 2
    try:
        from napari_gplws.sim.focus_stacks import random_training_stack
        from napari_gplws.stack import position_to_index
    except Exception:  # noqa: BLE001
        n_synth = 0
    out = []
    for i in range(n - n_synth):
        nf = (10, 20, 32, 48)[i % 4]
        out.append(ds.sample(n_frames=nf, size=(96, 96), rgb=(i % 5 == 4)))
    rng = np.random.default_rng(seed + 1)
    for i in range(n_synth):
        nf = (10, 20, 32, 48)[i % 4]
        s = random_training_stack(rng, shape=(96, 96), n_frames=(nf, nf))
        idx = position_to_index(s.depth_um, s.stack.positions).astype(np.float32)
        out.append(TrainingSample(np.asarray(s.stack.frames), idx, "synth:" + s.params.family))
    return out
