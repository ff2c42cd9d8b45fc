"""Neural networks of napari-gplws, their packaged weights and model cards.

* :mod:`.gplws` — GPLWS-Net, depth from focus (:class:`~.gplws.GPLWSNet`);
* :mod:`.ldse` — LDSE-NET, signed defocus of one tile (:class:`~.ldse.LDSENet`);
* :mod:`.registry` — find, load (once, cached) and write the weights of both networks;
* :mod:`.cards` — model cards as Markdown, parameter counts.

Submodules load on first use: importing this package does not import torch.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submodules=["cards", "gplws", "ldse", "registry"],
    submod_attrs={
        "cards": ["card_markdown", "count_parameters", "ldse_card_markdown"],
        "gplws": ["GPLWSConfig", "GPLWSNet", "depth_from_logits", "normalize_stack"],
        "ldse": ["TILE_PX", "LDSEConfig", "LDSENet", "prepare_tiles"],
        "registry": [
            "DEFAULT_GPLWS", "DEFAULT_LDSE", "WEIGHTS_DIR", "clear_cache", "has_default_weights",
            "load_gplws", "load_ldse", "model_card", "save_gplws", "save_ldse", "weights_path",
        ],
    },
)
