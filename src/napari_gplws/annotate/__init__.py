"""Ground-truth review: hand-correct the depth maps of a Micro 3D-style dataset (Qt-free).

This is the whole logic of the *Ground truth editor*; it never imports Qt or napari, so a
script, a notebook or a test drives it exactly as the dock does.

* :class:`AnnotationDataset` (:mod:`.dataset`) opens a dataset root, keeps the review
  manifest and exports the corrected dataset.
* :class:`EditSession` (:mod:`.session`) edits one sample's ground truth as a float32 map
  in µm, with undo/redo, a recovery file, an edit log and a suspect map for guidance.
* :func:`load_sample` (:mod:`.samples`) reads one sample; :func:`brush_mask` and
  :func:`polygon_mask` (:mod:`.masks`) say which pixels an edit touches.

Ground-truth files themselves are found, read and written by :mod:`napari_gplws.io.micro3d`;
the original file is never modified (corrections go to the sample's ``corrections/`` folder).
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "dataset": ["AnnotationDataset", "SampleInfo"],
        "masks": ["brush_mask", "polygon_mask"],
        "samples": ["MANIFEST_NAME", "STATUSES", "UNITS", "WORK_DIR", "SampleData", "load_sample"],
        "session": ["Edit", "EditSession", "parabolic_peak"],
    },
)
