"""Training of both networks: GPLWS-Net (depth from focus) and LDSE-NET (tile defocus).

* :mod:`.gplws` — options, loss and loop of GPLWS-Net; :mod:`.gplws_data` its synthetic
  renderer, :mod:`.gplws_sources` its batch sources, :mod:`.gplws_card` its model card;
* :mod:`.ldse` — loss and loop of LDSE-NET; :mod:`.ldse_config` its options,
  :mod:`.ldse_data` its real data and batches, :mod:`.ldse_card` its model card;
* :mod:`.calibrate` — fine-tuning LDSE-NET on one microscope's own focus stacks
  (``gplws calibrate``); :mod:`.calibrate_card` the model card of its weights;
* :mod:`._common` — what both share (config dicts, schedule, checkpoints, logs).

Only the command line (:mod:`napari_gplws.cli.train`) imports this package. Submodules
load on first use, so importing it does not import torch.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submodules=[
        "calibrate", "calibrate_card", "gplws", "gplws_card", "gplws_data", "gplws_sources",
        "ldse", "ldse_card", "ldse_config", "ldse_data",
    ],
    submod_attrs={
        # its function calibrate() is reached through the module of the same name
        "calibrate": ["CalibrationConfig", "CalibrationData", "CalibrationResult",
                      "calibration_data", "held_out_metrics", "predict_parts"],
        "calibrate_card": ["CALIBRATION_KIND", "calibration_card"],
        "gplws": ["TrainConfig", "gplws_loss", "make_batch", "train_gplws"],
        "gplws_data": ["RenderConfig", "SyntheticFocusDataset", "TrainingSample"],
        "gplws_sources": ["validation_set"],
        "ldse": ["ldse_loss", "train_ldse"],
        "ldse_card": ["reevaluate_card"],
        "ldse_config": ["LDSETrainConfig"],
    },
)
