"""Height map -> mesh: geometry in world units, orientation, texture coordinates, file export."""

from __future__ import annotations

import numpy as np
import pytest

from napari_gplws.errors import GplwsError
from napari_gplws.metrology.mesh import export_mesh, height_map_mesh, texture_image


def tilted_plane(h=40, w=60, slope_x=0.25, slope_y=-0.1, z0=3.0):
    rr, cc = np.indices((h, w), dtype=np.float64)
    return z0 + slope_x * cc + slope_y * rr


def test_vertices_are_world_coordinates_with_true_aspect():
    d = tilted_plane()
    m = height_map_mesh(d, spacing_yx=(0.5, 0.25), translate_yx=(10.0, -4.0), max_side=1000)
    assert m.step == 1 and m.vertices.shape == (40 * 60, 3) and m.true_aspect
    z, y, x = m.vertices.T
    rows, cols = (y - 10.0) / 0.5, (x + 4.0) / 0.25
    np.testing.assert_allclose(rows, np.rint(rows), atol=1e-4)
    # z is the depth itself at that pixel: no scaling, no flip.
    np.testing.assert_allclose(
        z, d[np.rint(rows).astype(int), np.rint(cols).astype(int)], atol=1e-4
    )
    assert y.min() == pytest.approx(10.0) and y.max() == pytest.approx(10.0 + 39 * 0.5)
    assert x.min() == pytest.approx(-4.0) and x.max() == pytest.approx(-4.0 + 59 * 0.25)


def test_coarse_grid_spans_the_map_and_is_unbiased_on_a_plane():
    d = tilted_plane(300, 500)
    m = height_map_mesh(d, max_side=64)
    assert m.step == 8
    z, y, x = m.vertices.T
    assert y.max() == 299 and x.max() == 499  # last row and column kept
    inner = (y > 8) & (y < 290) & (x > 8) & (x < 490)
    np.testing.assert_allclose(
        z[inner], tilted_plane(300, 500)[y[inner].astype(int), x[inner].astype(int)], atol=1e-6
    )
    assert len(m.faces) == 2 * (len(np.unique(y)) - 1) * (len(np.unique(x)) - 1)


def test_export_frame_is_right_handed_with_normals_up():
    m = height_map_mesh(tilted_plane(), spacing_yx=(1.0, 1.0))
    xyz = m.export_xyz()
    f = m.faces
    n = np.cross(xyz[f[:, 1]] - xyz[f[:, 0]], xyz[f[:, 2]] - xyz[f[:, 0]])
    assert (n[:, 2] > 0).all()
    # y grows towards row 0: the first vertex (row 0) has the largest y.
    assert xyz[0, 1] == xyz[:, 1].max() and xyz[:, 0].min() == 0


def test_texcoords_point_at_the_vertex_pixel():
    h, w = 30, 50
    m = height_map_mesh(np.zeros((h, w)), max_side=1000)
    _, y, x = m.vertices.T
    u, v = m.texcoords.T
    # OBJ/OpenGL convention: u along columns, v = 0 at the bottom row.
    np.testing.assert_allclose(np.floor(u * w), x)
    np.testing.assert_allclose(np.floor((1 - v) * h), y)


def test_nan_pixels_drop_their_faces():
    d = tilted_plane(20, 20)
    d[5:8, 5:8] = np.nan
    m = height_map_mesh(d)
    assert np.isfinite(m.vertices).all()
    full = height_map_mesh(tilted_plane(20, 20))
    assert len(m.faces) < len(full.faces)


def test_texture_image_stretches_to_unit_range_and_keeps_colour():
    rgb = np.random.default_rng(0).integers(0, 4000, (20, 30, 3)).astype(np.uint16)
    t = texture_image(rgb)
    assert t.shape == (20, 30, 3) and t.dtype == np.float32
    assert t.min() >= 0.0 and t.max() <= 1.0
    big = texture_image(np.zeros((100, 50), np.uint8), max_side=40)
    assert max(big.shape) <= 40


@pytest.mark.parametrize("suffix", [".ply", ".stl", ".obj"])
def test_export_round_trip(tmp_path, suffix):
    trimesh = pytest.importorskip("trimesh")
    d = tilted_plane(20, 30)
    m = height_map_mesh(d, spacing_yx=(0.5, 0.5))
    tex = texture_image(np.random.default_rng(1).random((20, 30)))
    out = export_mesh(tmp_path / f"surface{suffix}", m, tex)
    loaded = trimesh.load(out, process=False, force="mesh")
    assert len(loaded.faces) == len(m.faces)
    # Heights (z) survive in µm, lateral extent is (W-1)·px by (H-1)·px.
    ext = loaded.vertices.max(axis=0) - loaded.vertices.min(axis=0)
    np.testing.assert_allclose(ext, [29 * 0.5, 19 * 0.5, d.max() - d.min()], atol=1e-4)
    if suffix == ".obj":
        assert (tmp_path / "surface.mtl").is_file() and (tmp_path / "surface.png").is_file()
    if suffix == ".ply":
        assert loaded.visual.vertex_colors.shape == (len(m.vertices), 4)


def test_errors_are_messages():
    with pytest.raises(GplwsError, match="2-D"):
        height_map_mesh(np.zeros((3, 4, 5)))
    with pytest.raises(GplwsError, match="no finite"):
        height_map_mesh(np.full((4, 4), np.nan))
    m = height_map_mesh(np.zeros((4, 4)))
    with pytest.raises(GplwsError, match=".ply"):
        export_mesh("surface.xyz", m)
