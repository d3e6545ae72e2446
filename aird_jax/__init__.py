"""aird_jax: artifact-invariant deepfake detection in JAX/Flax."""

__version__ = "0.1.0"
