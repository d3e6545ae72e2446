"""Baselines the paper compares against; importing this package registers them.

* ``mesonet`` (``mesonet.py``): Meso-4, from scratch.
* ``xception`` / ``xception_tiny`` (``xception.py``): the FaceForensics++ Xception (ImageNet
  weights through ``aird_jax.models.port_xception``) and its test-scale variant.
"""

from aird_jax.models.baselines import mesonet, xception

__all__ = ["mesonet", "xception"]
