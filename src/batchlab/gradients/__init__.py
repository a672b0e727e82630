"""Gradient statistics: one module per quantity, each with its estimator, its probe (measured while
training, ``[probes]``) and its stand-alone measurement (``batchlab noise-scale``, ``[measure]``).

- distance.py       distance of the weights from their initialization (probe)
- update_norms.py   norm of every update (probe)
- noise_scale.py    gradient noise scale B_simple, McCandlish et al. 2018 (probe and measurement)
- grad_stats.py     batch-gradient norm against batch size, and gradient diversity (measurement)
- memory.py         peak memory of a training step by batch size (measurement)

estimators.py holds the shared mathematics (batch and per-example gradients, the two-batch
estimates); probe.py and measurement.py the two registries. Importing this package registers all.
"""

from batchlab.gradients import distance, grad_stats, memory, noise_scale, update_norms  # noqa: F401
from batchlab.gradients.measurement import measurements
from batchlab.gradients.probe import Probe, flat_weights, layer_slices, probes

DEFAULT_PROBES = ["distance", "update-norms"]

__all__ = ["DEFAULT_PROBES", "Probe", "flat_weights", "layer_slices", "measurements", "probes"]
