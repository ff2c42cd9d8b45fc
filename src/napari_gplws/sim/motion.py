"""Focus stacks whose frames move: focus breathing, drift and rotation, with the true motion.

What it is for: tests and benchmarks of frame alignment. Real stacks taken through
non-telecentric optics (stereo and digital microscopes, macro lenses) *breathe*: the
magnification changes with focus; stages drift, and a motorised focus can shift the field.

:func:`moving_stack` renders one noise-free synthetic scene (:mod:`.focus_stacks`) on a
field larger than the frame, moves every frame by a known similarity transform, crops the
frame, and only then applies the camera (shot and read noise, gamma, quantisation). The
same noise-free frames, cropped without moving them, give the *still* stack of the same
scene with the same noise draw, so a moving stack and its still twin differ by the motion
alone.

Transforms are ``(N, 2, 3)`` affine matrices ``A_k`` in pixel coordinates ``(x, y)``
(column, row): the point ``p`` of the reference frame is seen at ``A_k @ [x, y, 1]`` in
frame ``k``. The reference frame (the middle one, ``N // 2``, by default) does not move,
so its geometry is the ground truth's: ``depth_um`` and ``texture`` are those of the still
scene. Frame ``k`` is magnified by ``1 + breathing * (k - ref) / (N - 1)`` about the frame
centre (so ``breathing`` is the change of magnification over the whole stack), shifted by
``drift_px * (k - ref)`` and turned by ``rotation_deg * (k - ref) / (N - 1)``.

Resampling uses cubic splines (:func:`scipy.ndimage.affine_transform`), applied to the
noise-free frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_gplws.errors import SynthError
from napari_gplws.sim.focus_stacks import _add_noise, _as_generator, synthetic_stack
from napari_gplws.stack import FocalStack

__all__ = ["MovingStack", "motion_transforms", "moving_stack"]


@dataclass(frozen=True, eq=False)
class MovingStack:
    """A moving focus stack, its still twin and the true motion.

    Attributes
    ----------
    stack
        The moving stack (frames as the camera saw them).
    still
        The same scene and noise draw without motion.
    depth_um
        ``(H, W)`` float32 ground-truth depth in µm, in the reference frame's geometry.
    texture
        ``(H, W)`` or ``(H, W, 3)`` float32 ideal all-in-focus radiance in ``[0, 1]``.
    transforms
        ``(N, 2, 3)`` float64: reference-frame pixel ``(x, y)`` to frame-``k`` pixel.
    reference
        Index of the frame that does not move.
    """

    stack: FocalStack
    still: FocalStack
    depth_um: np.ndarray
    texture: np.ndarray
    transforms: np.ndarray
    reference: int


def motion_transforms(
    n_frames: int,
    shape: tuple[int, int],
    *,
    breathing: float = 0.05,
    drift_px: tuple[float, float] = (0.6, 0.0),
    rotation_deg: float = 0.0,
    reference: int | None = None,
) -> np.ndarray:
    """The ``(N, 2, 3)`` transforms of :func:`moving_stack` (reference pixel to frame pixel).

    Parameters
    ----------
    n_frames, shape
        Number of frames and ``(H, W)`` frame size in pixels.
    breathing
        Change of magnification from the first frame to the last (0.05 = 5 %; negative
        shrinks).
    drift_px
        ``(dx, dy)`` shift in pixels per frame.
    rotation_deg
        Rotation from the first frame to the last, in degrees.
    reference
        Index of the frame that does not move (default ``N // 2``).
    """
    n = int(n_frames)
    ref = n // 2 if reference is None else int(reference)
    if not 0 <= ref < n:
        raise SynthError(f"reference {reference} is outside 0..{n - 1}.")
    h, w = shape
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    out = np.zeros((n, 2, 3), np.float64)
    span = max(n - 1, 1)
    for k in range(n):
        m = 1.0 + float(breathing) * (k - ref) / span
        a = np.deg2rad(float(rotation_deg) * (k - ref) / span)
        lin = m * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        t = c - lin @ c + np.asarray(drift_px, np.float64) * (k - ref)
        out[k, :, :2] = lin
        out[k, :, 2] = t
    return out


def _warp(frame: np.ndarray, a: np.ndarray, out_shape: tuple[int, int], offset: float) -> np.ndarray:
    """Frame ``k`` as the camera sees it: ``out(q) = field(A^-1 q + offset)``.

    ``A`` is in the crop's pixel coordinates; the crop's pixel ``q`` sits at ``q + offset``
    in the rendered field.
    """
    inv = np.linalg.inv(a[:, :2])
    t_xy = -inv @ a[:, 2] + offset
    # scipy works in (row, col) = (y, x): swap the axes of the matrix and of the offset.
    m, t_rc = inv[::-1, ::-1], t_xy[::-1]
    chans = [frame] if frame.ndim == 2 else [frame[..., c] for c in range(frame.shape[-1])]
    res = [
        ndi.affine_transform(ch, m, offset=t_rc, output_shape=out_shape, order=3, mode="reflect")
        for ch in chans
    ]
    return res[0] if frame.ndim == 2 else np.stack(res, axis=-1)


def moving_stack(
    *,
    breathing: float = 0.05,
    drift_px: tuple[float, float] = (0.6, 0.0),
    rotation_deg: float = 0.0,
    reference: int | None = None,
    n_frames: int = 12,
    shape: tuple[int, int] = (192, 192),
    photons: float | None = 5000.0,
    read_noise: float = 0.003,
    gamma: float = 1.0,
    bit_depth: int = 8,
    seed: int = 0,
    **scene: Any,
) -> MovingStack:
    """A synthetic focus stack whose frames breathe, drift and turn, with its still twin.

    Parameters
    ----------
    breathing, drift_px, rotation_deg, reference
        The motion (see :func:`motion_transforms`).
    n_frames, shape
        Frames and ``(H, W)`` frame size in pixels.
    photons, read_noise, gamma, bit_depth
        The camera, as in :func:`~napari_gplws.sim.focus_stacks.synthetic_stack`.
    seed
        Integer seed; the same arguments and seed give identical arrays.
    **scene
        Further arguments of :func:`~napari_gplws.sim.focus_stacks.synthetic_stack`
        (``family``, ``texture``, ``focus_um``, ``rgb``, ``blur_px_per_um``, …).

    Returns
    -------
    MovingStack

    Examples
    --------
    >>> m = moving_stack(n_frames=6, shape=(48, 48), breathing=0.04, seed=1)
    >>> m.stack.frames.shape == m.still.frames.shape, m.reference
    (True, 3)
    """
    h, w = int(shape[0]), int(shape[1])
    n = int(n_frames)
    tr = motion_transforms(
        n, (h, w), breathing=breathing, drift_px=drift_px, rotation_deg=rotation_deg,
        reference=reference,
    )
    ref = n // 2 if reference is None else int(reference)
    # How far any frame corner moves: the margin of the rendered field.
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], float)
    reach = max(float(np.abs(tr @ corners.T - corners[:, :2].T[None]).max()), 0.0)
    pad = int(np.ceil(reach)) + 8
    big = synthetic_stack(
        n_frames=n, shape=(h + 2 * pad, w + 2 * pad), photons=None, read_noise=0.0,
        gamma=1.0, bit_depth=32, seed=seed, **scene,
    )
    clean = big.stack.frames
    crop = (slice(pad, pad + h), slice(pad, pad + w))
    moved = np.stack([_warp(clean[k], tr[k], (h, w), float(pad)) for k in range(n)])
    still = np.ascontiguousarray(clean[:, crop[0], crop[1]])
    rng = _as_generator(seed).spawn(4)[3]
    state = rng.bit_generator.state

    def camera(frames: np.ndarray) -> np.ndarray:
        rng.bit_generator.state = state  # the same noise draw for both twins
        f = np.clip(frames.astype(np.float32), 0.0, 1.0)
        f = _add_noise(f, photons, read_noise, rng)
        if gamma != 1.0:
            np.power(f, np.float32(gamma), out=f)
        if bit_depth == 8:
            return np.round(f * 255.0).astype(np.uint8)
        if bit_depth == 16:
            return np.round(f * 65535.0).astype(np.uint16)
        return f.astype(np.float32)

    meta = {
        **big.stack.metadata,
        "shape": [h, w],
        "motion": {
            "breathing": float(breathing),
            "drift_px": [float(v) for v in drift_px],
            "rotation_deg": float(rotation_deg),
            "reference": ref,
        },
    }
    common = dict(focus_um=big.stack.focus_um, pixel_size_um=big.stack.pixel_size_um)
    moving_fs = FocalStack(camera(moved), source=f"synthetic-moving:{seed}", metadata=meta, **common)
    still_fs = FocalStack(camera(still), source=f"synthetic-still:{seed}", metadata=meta, **common)
    return MovingStack(
        stack=moving_fs,
        still=still_fs,
        depth_um=np.ascontiguousarray(big.depth_um[crop]),
        texture=np.ascontiguousarray(big.texture[crop]),
        transforms=tr,
        reference=ref,
    )
