"""Files in and out: focus stacks, depth maps, images, sidecars, zarr and Micro 3D datasets.

What goes in
    * a multi-page TIFF, an OME-TIFF or an ImageJ hyperstack TIFF (read with tifffile);
    * a folder of frames (``.bmp``, ``.png``, ``.tif``/``.tiff``, ``.jpg``/``.jpeg``), taken
      in *natural* order of their names (``1, 2, …, 10, …, 100``);
    * a ``.npy`` array or a ``.npz`` archive; a zarr / OME-Zarr store (lazily);
    * a glob path or a folder with a file-name pattern; a folder that also holds other
      images gives the frames of its clear majority format and names the files left out;
    * vendor files (Zeiss CZI, Nikon ND2, Leica LIF, …) through bioio and its reader
      plugins (:mod:`.vendor`, the optional extra ``napari-gplws[formats]``).

Physical units come from, in this order of precedence (the first that says something wins,
separately for the focus positions and for the pixel size): explicit arguments of
:func:`read_stack`; a JSON sidecar (:func:`read_sidecar`); the file's own metadata.

Writers produce ImageJ/Fiji-compatible TIFFs with their units and replace files
atomically. Nothing here does image processing, and nothing imports napari or Qt.
Submodules load on first use, so importing this package is cheap.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "_paths": ["FRAME_EXTENSIONS", "STACK_EXTENSIONS"],
        "_read": ["frame_selection", "is_stack_path", "list_frame_files", "parse_axis_pick",
                  "read_stack"],
        "_tiff": ["available_memory_bytes", "read_tiff_header"],
        "_units": ["SIDECAR_NAMES", "read_sidecar", "sidecar_path"],
        "_write": ["read_depth_tiff", "read_image_tiff", "save_stack", "write_depth_tiff",
                   "write_image_tiff"],
        "vendor": ["VENDOR_FORMATS", "have_bioio", "is_vendor_path", "read_vendor"],
    },
)
