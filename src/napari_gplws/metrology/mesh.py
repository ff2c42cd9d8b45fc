"""Height map -> triangle mesh: a coarse surface for 3D viewing and a mesh file for other tools.

:func:`height_map_mesh` turns a depth (height) map into a regular triangulated grid whose
vertices sit at pixel centres in world units (µm when the pixel size and focus positions are
known), so the surface has the true aspect ratio. The grid is *coarse* (at most a few hundred
vertices per side): the fine detail is carried by the texture, the full-resolution
all-in-focus image made ready by :func:`texture_image`, mapped through per-vertex texture
coordinates. :func:`export_mesh` writes PLY (with per-vertex colour), STL (geometry) or OBJ
(with texture coordinates, material and PNG texture) through ``trimesh`` (MIT licence).

Coordinate conventions
----------------------
* :attr:`SurfaceMesh.vertices` are ``(z, y, x)`` in napari's world order: ``y``/``x`` are
  ``translate + index · spacing`` of the depth map's pixels (the same world position as the
  depth image layer), ``z`` is the depth value itself: the focus-drive position (µm) at which
  the point is sharpest. A surface point therefore sits, in world coordinates, inside the
  stack frame where it is in focus when the stack layer's z axis is scaled by the focus
  positions (as the plugin's reader and sample do).
* Texture coordinates ``(u, v)`` follow the OBJ/OpenGL convention that napari's Surface layer
  and mesh files use: ``u = (column + 0.5) / W`` left to right, ``v = 1 − (row + 0.5) / H``
  (``v`` = 0 at the bottom row of the image).
* Exported files use a right-handed ``(x, y, z)`` frame in the same units: ``x`` to the right,
  ``y`` up the image (row 0 at the top, so ``y`` grows towards row 0), ``z`` = depth, with the
  lateral origin at the bottom-left pixel centre; face normals point to ``+z``. A mesh made
  with ``height_sign`` (−1: height up toward the objective, +1: inverted) exports
  ``z = height_sign · depth`` instead, so other programs show a hole as a hole.

It does not compute depth (:mod:`napari_gplws.dff.classical`, :mod:`napari_gplws.dff.network`) nor surface roughness
(:mod:`napari_gplws.metrology.roughness`), and it knows nothing of napari.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from napari_gplws.errors import GplwsError

__all__ = [
    "MESH_FORMATS",
    "SurfaceMesh",
    "export_mesh",
    "height_map_mesh",
    "texture_image",
]

#: File suffixes :func:`export_mesh` writes.
MESH_FORMATS = (".ply", ".stl", ".obj")

#: Default maximum number of vertices along the longer side of the coarse grid.
DEFAULT_MAX_SIDE = 256


@dataclass(frozen=True)
class SurfaceMesh:
    """A triangulated height map.

    Attributes
    ----------
    vertices : (V, 3) float32
        ``(z, y, x)`` world coordinates (see the module docstring).
    faces : (F, 3) int32
        Vertex indices; faces touching a pixel without depth (NaN) are left out.
    texcoords : (V, 2) float32
        ``(u, v)`` in ``[0, 1]`` into the full-resolution image of the height map's shape.
    z_units, lateral_units : str
        Unit of ``z`` (``"µm"`` or ``"frame"``) and of ``y``/``x`` (``"µm"`` or ``"px"``).
    step : int
        Grid spacing in pixels of the height map.
    shape : (int, int)
        ``(H, W)`` of the height map.
    height_sign : float or None
        Exported ``z`` is ``height_sign · depth`` (height); ``None`` exports depth.
    """

    vertices: np.ndarray
    faces: np.ndarray
    texcoords: np.ndarray
    z_units: str
    lateral_units: str
    step: int
    shape: tuple[int, int]
    height_sign: float | None = None

    @property
    def true_aspect(self) -> bool:
        """Whether z and the lateral axes share one physical unit (µm)."""
        return self.z_units == "µm" and self.lateral_units == "µm"

    def export_xyz(self) -> np.ndarray:
        """``(V, 3)`` float64 ``(x, y, z)`` in the right-handed export frame (module docstring)."""
        z, y, x = (self.vertices[:, i].astype(np.float64) for i in range(3))
        if self.height_sign is not None:
            z = z * float(self.height_sign)
        return np.column_stack([x - x.min(), y.max() - y, z])


def _check_depth(depth: np.ndarray) -> np.ndarray:
    arr = np.asarray(depth)
    if arr.ndim != 2 or arr.dtype.kind not in "uif" or min(arr.shape) < 2:
        raise GplwsError(
            f"A height map must be a 2-D real array of at least 2×2 pixels; got shape {arr.shape} "
            f"dtype {arr.dtype}."
        )
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).any():
        raise GplwsError("The height map has no finite values; there is no surface to draw.")
    return arr


def _grid_index(n: int, step: int) -> np.ndarray:
    idx = np.arange(0, n, step)
    if idx[-1] != n - 1:
        idx = np.append(idx, n - 1)
    return idx


def _nan_smooth(d: np.ndarray, size: int) -> np.ndarray:
    """Box mean over ``size`` pixels that ignores NaN (NaN where a window holds no value)."""
    if size <= 1:
        return d
    valid = np.isfinite(d)
    num = ndi.uniform_filter(np.where(valid, d, 0.0), size=size, mode="nearest")
    den = ndi.uniform_filter(valid.astype(np.float64), size=size, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-9, num / np.maximum(den, 1e-12), np.nan)


def height_map_mesh(
    depth: np.ndarray,
    *,
    spacing_yx: Sequence[float] = (1.0, 1.0),
    translate_yx: Sequence[float] = (0.0, 0.0),
    z_units: str = "µm",
    lateral_units: str = "µm",
    max_side: int = DEFAULT_MAX_SIDE,
    z_scale: float = 1.0,
    height_sign: float | None = None,
) -> SurfaceMesh:
    """A coarse triangle mesh of a height map, in world units.

    Parameters
    ----------
    depth
        ``(H, W)`` height (depth) map; NaN marks pixels without depth.
    spacing_yx
        Pixel size ``(dy, dx)`` in world units (µm, or 1 for pixels).
    translate_yx
        World position of pixel ``(0, 0)``'s centre.
    z_units, lateral_units
        Units of the depth values and of the spacing, recorded in the result.
    max_side
        Largest number of vertices along the longer side (>= 2). The grid step is
        ``ceil((max(H, W) − 1) / (max_side − 1))`` pixels; the last row and column are
        always included so the mesh spans the whole map. Vertex heights are the NaN-aware
        box mean over one grid step (rounded up to odd, centred on the vertex), so coarse
        sampling does not alias fine noise.
    z_scale
        Multiplies ``z`` (1 = true aspect ratio).
    height_sign
        ``-1`` or ``+1``: exported files hold height ``height_sign · depth`` (see the
        module docstring); ``None`` (default) exports depth. The vertices stay depth.

    Returns
    -------
    SurfaceMesh

    Raises
    ------
    GplwsError
        Not a 2-D real map, no finite value, or invalid spacing/size.

    Examples
    --------
    >>> d = np.add.outer(np.zeros(5), np.arange(7.0))  # z grows with x
    >>> m = height_map_mesh(d, spacing_yx=(0.5, 0.5))
    >>> m.vertices.shape, m.faces.shape, float(m.vertices[:, 0].max())
    ((35, 3), (48, 3), 6.0)
    """
    d = _check_depth(depth)
    dy, dx = (float(v) for v in spacing_yx)
    ty, tx = (float(v) for v in translate_yx)
    if not (np.isfinite([dy, dx]).all() and dy > 0 and dx > 0):
        raise GplwsError(f"Pixel spacing must be positive; got {tuple(spacing_yx)}.")
    if int(max_side) < 2:
        raise GplwsError(f"max_side must be at least 2; got {max_side}.")
    if not np.isfinite(z_scale) or z_scale == 0:
        raise GplwsError(f"z_scale must be a non-zero number; got {z_scale}.")
    if height_sign not in (None, -1, 1, -1.0, 1.0):
        raise GplwsError(f"height_sign must be -1, +1 or None; got {height_sign}.")
    h, w = d.shape
    step = max(1, int(np.ceil((max(h, w) - 1) / (int(max_side) - 1))))
    rows, cols = _grid_index(h, step), _grid_index(w, step)
    # An odd window is centred on the vertex (an even one would shift the map by half a pixel).
    z = _nan_smooth(d, step + 1 - step % 2)[np.ix_(rows, cols)]
    ny, nx = z.shape
    rr, cc = np.meshgrid(rows.astype(np.float64), cols.astype(np.float64), indexing="ij")
    missing = ~np.isfinite(z)
    fill = float(np.nanmedian(z)) if (~missing).any() else float(np.nanmedian(d))
    zf = np.where(missing, fill, z) * float(z_scale)
    vertices = np.column_stack([zf.ravel(), (ty + rr * dy).ravel(), (tx + cc * dx).ravel()])
    texcoords = np.column_stack([((cc + 0.5) / w).ravel(), (1.0 - (rr + 0.5) / h).ravel()])

    ids = np.arange(ny * nx).reshape(ny, nx)
    a, b = ids[:-1, :-1].ravel(), ids[:-1, 1:].ravel()
    c, e = ids[1:, :-1].ravel(), ids[1:, 1:].ravel()
    faces = np.concatenate([np.column_stack([a, c, b]), np.column_stack([b, c, e])])
    if missing.any():
        faces = faces[~missing.ravel()[faces].any(axis=1)]
    mesh = SurfaceMesh(
        vertices=vertices.astype(np.float32),
        faces=faces.astype(np.int32),
        texcoords=texcoords.astype(np.float32),
        z_units=str(z_units),
        lateral_units=str(lateral_units),
        step=step,
        shape=(h, w),
        height_sign=None if height_sign is None else float(height_sign),
    )
    return _orient_up(mesh)


def _orient_up(mesh: SurfaceMesh) -> SurfaceMesh:
    """Flip the winding if needed so that, in the export frame, normals point to +z."""
    if len(mesh.faces) == 0:
        return mesh
    xyz = mesh.export_xyz()
    f = mesh.faces
    n = np.cross(xyz[f[:, 1]] - xyz[f[:, 0]], xyz[f[:, 2]] - xyz[f[:, 0]])
    if np.sum(n[:, 2]) < 0:
        return SurfaceMesh(
            vertices=mesh.vertices,
            faces=np.ascontiguousarray(f[:, ::-1]),
            texcoords=mesh.texcoords,
            z_units=mesh.z_units,
            lateral_units=mesh.lateral_units,
            step=mesh.step,
            shape=mesh.shape,
            height_sign=mesh.height_sign,
        )
    return mesh


def texture_image(
    image: np.ndarray, *, lo_pct: float = 0.5, hi_pct: float = 99.5, max_side: int = 8192
) -> np.ndarray:
    """Make an image ready to be a mesh texture: float32 in ``[0, 1]``, contrast-stretched.

    Parameters
    ----------
    image
        ``(H, W)`` gray or ``(H, W, 3|4)`` colour, any real dtype (e.g. the all-in-focus image).
    lo_pct, hi_pct
        Percentiles mapped to 0 and 1 (over all channels, so colour balance is kept).
    max_side
        Images larger than this (graphics cards limit texture sizes) are reduced by an
        integer factor; others keep their full resolution.

    Returns
    -------
    numpy.ndarray
        float32 ``(H', W')`` or ``(H', W', C)`` in ``[0, 1]``; a new array.

    Raises
    ------
    GplwsError
        Not a 2-D gray or colour image.
    """
    img = np.asarray(image)
    if (
        not (img.ndim == 2 or (img.ndim == 3 and img.shape[-1] in (3, 4)))
        or img.dtype.kind not in "uifb"
    ):
        raise GplwsError(
            f"A texture must be (H, W) or (H, W, 3|4) real values; got {img.shape} {img.dtype}."
        )
    factor = int(np.ceil(max(img.shape[:2]) / max(1, int(max_side))))
    if factor > 1:
        img = img[::factor, ::factor]
    f = img.astype(np.float32)
    finite = np.isfinite(f)
    if not finite.any():
        return np.zeros(f.shape, np.float32)
    vals = f[finite]
    if vals.size > 1 << 20:
        vals = vals[:: vals.size // (1 << 20)]
    lo, hi = np.percentile(vals, [lo_pct, hi_pct])
    if hi <= lo:
        hi = lo + 1.0
    out = np.clip((np.where(finite, f, lo) - lo) / (hi - lo), 0.0, 1.0)
    return out.astype(np.float32)


def _vertex_colours(mesh: SurfaceMesh, texture: np.ndarray) -> np.ndarray:
    """RGBA uint8 per vertex, sampled from a ``[0, 1]`` texture at the texture coordinates."""
    th, tw = texture.shape[:2]
    u, v = mesh.texcoords[:, 0], mesh.texcoords[:, 1]
    col = np.clip(np.floor(u * tw).astype(np.intp), 0, tw - 1)
    row = np.clip(np.floor((1.0 - v) * th).astype(np.intp), 0, th - 1)
    t = texture[row, col]
    if t.ndim == 1:
        t = np.repeat(t[:, None], 3, axis=1)
    t = t[:, :3]
    rgba = np.concatenate([t, np.ones((len(t), 1), t.dtype)], axis=1)
    return np.clip(np.rint(rgba * 255), 0, 255).astype(np.uint8)


def export_mesh(
    path: str | os.PathLike[str], mesh: SurfaceMesh, texture: np.ndarray | None = None
) -> Path:
    """Write a mesh as PLY, STL or OBJ (chosen by the suffix) in the export frame.

    Parameters
    ----------
    path
        Target file ending in ``.ply`` (binary, per-vertex RGBA colour from ``texture``),
        ``.stl`` (binary, geometry only) or ``.obj`` (texture coordinates; with a texture, a
        ``<stem>.mtl`` material and a ``<stem>.png`` image are written beside it). Its folder must exist.
    mesh
        The mesh (:func:`height_map_mesh`).
    texture
        Optional image in ``[0, 1]`` (:func:`texture_image`) of the height map's aspect.

    Returns
    -------
    Path
        The written path.

    Raises
    ------
    GplwsError
        Unknown suffix, missing folder, no faces, or the mesh library is not installed.
    """
    p = Path(os.fspath(path))
    suffix = p.suffix.lower()
    if suffix not in MESH_FORMATS:
        raise GplwsError(
            f"Cannot write a mesh to '{p}': choose a file ending in {', '.join(MESH_FORMATS)}."
        )
    if not p.parent.is_dir():
        raise GplwsError(
            f"The folder '{p.parent}' does not exist; choose another place for '{p.name}'."
        )
    if len(mesh.faces) == 0:
        raise GplwsError(
            "The mesh has no faces (the height map has no valid depth); nothing to export."
        )
    try:
        import trimesh
    except ImportError:
        raise GplwsError("Mesh export needs the 'trimesh' package: pip install trimesh") from None

    mesh = _orient_up(mesh)  # normals to +z whichever way z is exported
    xyz = mesh.export_xyz()
    tm = trimesh.Trimesh(vertices=xyz, faces=mesh.faces, process=False, validate=False)
    if suffix == ".ply" and texture is not None:
        tm.visual = trimesh.visual.ColorVisuals(tm, vertex_colors=_vertex_colours(mesh, texture))
    elif suffix == ".obj":
        image = None
        if texture is not None:
            from PIL import Image

            t8 = np.clip(np.rint(np.asarray(texture)[..., :3] * 255), 0, 255).astype(np.uint8)
            image = Image.fromarray(t8)
        material = trimesh.visual.material.SimpleMaterial(image=image, name=p.stem)
        tm.visual = trimesh.visual.TextureVisuals(
            uv=mesh.texcoords.astype(np.float64), material=material
        )
    kwargs = {"mtl_name": f"{p.stem}.mtl"} if suffix == ".obj" else {}
    try:
        tm.export(str(p), **kwargs)
    except OSError as exc:
        raise GplwsError(f"Could not write the mesh to '{p}': {exc}.") from None
    return p
