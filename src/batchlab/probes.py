"""The plugin API for probes: subclass ``Probe`` and register a builder with ``@probes.register(name)``.

The built-in probes are gradient quantities and live in ``batchlab.gradients``, one file each.
"""

from batchlab.gradients import DEFAULT_PROBES, Probe, flat_weights, layer_slices, probes

__all__ = ["DEFAULT_PROBES", "Probe", "flat_weights", "layer_slices", "probes"]
