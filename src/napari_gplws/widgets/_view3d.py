"""The 3D look at a reconstructed surface, and the way back to the 2D view as it was.

While the viewer is in 2D the (hidden) surface layer lies in the stack's world geometry, so
it changes nothing on the z slider: its z axis is the stack's (frame index × the stack's z
scale and translate), and each point sits in the frame where it is in focus.

Depth grows away from the objective; people read a surface as **height**, up toward the
objective, so that a drilled hole looks like a hole. While :class:`SurfaceView` shows the
surface in 3D, the layer holds the mesh in world units with ``z = height = −depth`` (µm
when the focus positions and pixel size are known: the true aspect ratio), seen from
napari's usual side, obliquely, with world +z up on the screen: the image is not mirrored
and the light comes from the viewer's side. With the *invert height* setting (stands whose
focus drive runs the other way) ``z = +depth``. Leaving 3D puts the surface back in the
stack's geometry and restores the 2D camera, the slider position and the layers' visibility.

(Flipping napari's camera orientation instead would also turn the relief over, but napari
then lights the surface from behind.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_gplws.widgets import _layers

__all__ = ["SurfaceView", "camera_of", "height_geometry"]

#: Camera of the 3D view, in napari world order (z, y, x): from napari's usual side (the
#: one that shows the 2-D image unmirrored), raised 45° above the bottom edge of the image
#: and turned a little, so relief reads; world +z is up on the screen.
VIEW_3D = (-1.0, -0.9, 0.3)
UP_3D = (1.0, 0.0, 0.0)


def camera_of(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` in napari ≥ 0.9, else ``viewer.camera``)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def height_geometry(world_vertices: np.ndarray, inverted: bool) -> np.ndarray:
    """Vertices ``(z, y, x)`` in world units with ``z`` = height: ``−depth``, or ``+depth``
    when ``inverted``; ``world_vertices`` hold ``z`` = depth."""
    v = np.array(world_vertices, dtype=np.float32, copy=True)
    if not inverted:
        v[:, 0] *= -1.0
    return v


class SurfaceView:
    """Show one surface layer alone in 3D as height, and go back to the 2D view as it was."""

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self.surface: Any = None
        self._world: np.ndarray | None = None
        self._visibility: dict[Any, bool] | None = None
        self._camera: dict[str, Any] | None = None
        self._geometry: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        """Whether the 3D view is on (entered and not left)."""
        return self._visibility is not None

    def enter(self, surface: Any, world_vertices: np.ndarray, inverted: bool) -> None:
        """Remember the 2D view, show ``surface`` alone in 3D, seen obliquely as height.

        ``world_vertices`` are the surface's vertices in world units with ``z`` = depth.
        """
        cam = camera_of(self.viewer)
        if not self.active:
            self._visibility = {ly.unique_id: ly.visible for ly in self.viewer.layers}
            self._camera = {
                "center": tuple(cam.center), "zoom": float(cam.zoom), "angles": tuple(cam.angles),
                "step": tuple(self.viewer.dims.current_step),
            }  # fmt: skip
        self.surface, self._world = surface, np.asarray(world_vertices)
        self._geometry = {
            "data": surface.data, "scale": tuple(surface.scale), "translate": tuple(surface.translate),
        }  # fmt: skip
        surface.scale = (1.0, 1.0, 1.0)
        surface.translate = (0.0, 0.0, 0.0)
        self.set_inverted(inverted)
        for ly in self.viewer.layers:
            ly.visible = _layers.same(ly, surface)
        self.viewer.dims.ndisplay = 3
        self.viewer.reset_view()
        cam.set_view_direction(VIEW_3D, up_direction=UP_3D)
        cam.zoom *= 0.8
        self.viewer.layers.selection.active = surface  # its controls: shading, opacity…

    def set_inverted(self, inverted: bool) -> None:
        """Draw the shown surface as height (``inverted`` False) or as depth."""
        if self._geometry is None or self._world is None:
            return
        data = self._geometry["data"]
        self.surface.data = (height_geometry(self._world, inverted), *data[1:])

    def leave(self) -> None:
        """Back to 2D: the surface in the stack's geometry, the layers' visibility, the
        slider position and the 2D camera as they were."""
        saved, camera, geometry = self._visibility or {}, self._camera, self._geometry
        if geometry is not None and _layers.contains(self.viewer, self.surface):
            self.surface.data = geometry["data"]
            self.surface.scale = geometry["scale"]
            self.surface.translate = geometry["translate"]
        self._visibility = self._camera = self._geometry = self._world = None
        self.surface = None
        self.viewer.dims.ndisplay = 2
        for ly in self.viewer.layers:
            if ly.unique_id in saved:
                ly.visible = saved[ly.unique_id]
        if camera is not None:
            step = camera["step"]
            if len(step) == self.viewer.dims.ndim:
                self.viewer.dims.current_step = step
            cam = camera_of(self.viewer)
            cam.angles = camera["angles"]
            cam.center = camera["center"]
            cam.zoom = camera["zoom"]
