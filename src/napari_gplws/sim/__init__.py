"""Simulators, numpy only: focus stacks with ground truth, PSFs and defocused tiles.

* :mod:`.focus_stacks` — synthetic focus stacks for depth from focus (height maps in
  :mod:`.heights`, textures in :mod:`.textures`, blur in :mod:`.defocus_render`).
* :mod:`.psf` — a scalar pupil-function PSF model with aberrations.
* :mod:`.defocus_tiles` — defocused microscope tiles with signed labels, for LDSE-NET.
* :mod:`.instrument` — focus stacks from one fixed simulated microscope (its own PSF
  asymmetry) with known best focus, for measuring autofocus calibration.
* :mod:`.motion` — focus stacks whose frames drift and shift, for testing alignment.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "focus_stacks": ['HEIGHT_FAMILIES', 'SynthParams', 'SyntheticStack', 'TEXTURES', 'random_training_stack', 'synthesize', 'synthetic_stack'],
        "heights": ['height_map'],
        "textures": ['available_textures', 'texture_image'],
        "defocus_render": ['defocus_render'],
        "psf": ['OPTICS_20X', 'OPTICS_40X', 'Optics', 'PRESETS', 'airy_pattern', 'psf_2d'],
        "defocus_tiles": ['DefocusSimulator', 'TileSet', 'camera'],
        "psf_bank": ['Aberration', 'PSFBank', 'psf_bank', 'random_aberration'],
        "specimens": ['SPECIMENS', 'TEST_SPECIMENS', 'TRAIN_SPECIMENS', 'specimen_image'],
        "instrument": ['INSTRUMENTS', 'Instrument', 'InstrumentBank', 'InstrumentStack',
                       'coverslip_spherical_waves', 'instrument_simulator', 'instrument_stack',
                       'psf_size_for'],
        "motion": ['MovingStack', 'motion_transforms', 'moving_stack'],
    },
)
