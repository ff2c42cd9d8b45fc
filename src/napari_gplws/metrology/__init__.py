"""Measurements on a height map: profiles and step heights, surface roughness, 3D meshes.

Numpy only; depth and heights in the map's unit (µm when the focus positions are known).
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "profile": ['HeightProfile', 'height_at', 'height_convention', 'height_from_depth', 'height_profile', 'step_height', 'write_profile_csv'],
        "roughness": ['PARAMETERS', 'SurfaceParameters', 'level_plane', 'surface_parameters', 'write_parameters_csv'],
        "mesh": ['MESH_FORMATS', 'SurfaceMesh', 'export_mesh', 'height_map_mesh', 'texture_image'],
    },
)
