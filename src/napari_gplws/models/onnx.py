"""Export GPLWS-Net to ONNX, for runtimes other than PyTorch.

The exported graph is the fused (re-parameterised) network with a dynamic number of
frames and frame size; ``gplws export`` calls :func:`export_onnx`.
"""

from __future__ import annotations

from pathlib import Path

from napari_gplws.errors import ModelError


def export_onnx(path: str | Path, weights: str | Path = "gplws_default", opset: int = 17) -> Path:
    """Export the fused network to ONNX.

    The graph takes a *normalised* float32 stack ``input`` of shape ``(B, 1, N, H, W)``
    (dynamic B, N, H, W; H and W multiples of 16 avoid the in-graph padding branch; see
    :func:`predict_depth` for the normalisation) and returns ``logits`` ``(B, N, H, W)``;
    softmax over axis 1 gives the per-frame probability.

    Raises
    ------
    ModelError
        The ``onnx`` exporter dependencies are missing.
    """
    import torch

    from napari_gplws.models.registry import load_gplws

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = load_gplws(weights, "cpu")
    example = torch.zeros(1, 1, 8, 64, 64)
    try:
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch", 2: "frames", 3: "height", 4: "width"},
                          "logits": {0: "batch", 1: "frames", 2: "height", 3: "width"}},
            opset_version=opset,
            dynamo=False,
        )
    except ImportError as exc:
        raise ModelError(f"ONNX export needs the 'onnx' package: {exc}. Install napari-gplws[dev].") from None
    return path
