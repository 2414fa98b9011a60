"""cimnas-jax: joint search of neural network, per-layer quantization and compute-in-memory
accelerator, in JAX."""
import logging as _logging

# JAX logs a probe for a TPU at INFO on every start; it is noise for users of this package.
_logging.getLogger("jax._src.xla_bridge").setLevel(_logging.WARNING)

__version__ = "0.1.0"
