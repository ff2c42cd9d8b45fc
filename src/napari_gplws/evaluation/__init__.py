"""How good and how fast: depth metrics, benchmarks of both networks, region errors.

* :mod:`.metrics` — MSE, MAE, RMSE, AbsRel, SqRel, bumpiness… and :func:`format_table`.
* :mod:`.depth_benchmark` — the one evaluation loop (:func:`evaluate`), the held-out
  synthetic benchmark and dataset folders with ground truth.
* :mod:`.region_error` — reconstruction error per region (the Focal error map's RMSE mode).
* :mod:`.defocus_metrics` — LDSE-NET's held-out tests (tiles, regions, pairs of frames).
* :mod:`.speed`, :mod:`.defocus_speed` — the ``gplws bench`` tables.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "metrics": ['METRIC_KEYS', 'MetricError', 'depth_metrics', 'format_table'],
        "depth_benchmark": ['EvalSample', 'evaluate', 'load_eval_dataset', 'synthetic_benchmark'],
        "region_error": ['frame_error_summary', 'overall_rmse', 'region_rmse'],
        "defocus_metrics": ['defocus_metrics', 'evaluate_held_out'],
        "speed": ['run_bench'],
    },
)
