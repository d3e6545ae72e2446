"""Baselines the paper compares against; importing this package registers them.

* ``mesonet`` (``mesonet.py``): Meso-4, from scratch.
* ``xception`` / ``xception_tiny`` (``xception.py``): the FaceForensics++ Xception (ImageNet
  weights through ``aird_jax.models.port_xception``) and its test-scale variant.
* ``face_xray`` / ``face_xray_tiny`` (``face_xray.py``): Face X-ray (blending-boundary map and
  classifier) on the EfficientNet trunk, trained on self-blended fakes (``data.fakes=sbi``).
* ``f3net`` / ``f3net_tiny`` (``f3net.py``): F3-Net (FAD + LFS streams, MixBlock fusion).
* ``spsl`` / ``spsl_tiny`` (``spsl.py``): SPSL (RGB + phase-only image into Xception).
"""

from aird_jax.models.baselines import f3net, face_xray, mesonet, spsl, xception

__all__ = ["f3net", "face_xray", "mesonet", "spsl", "xception"]
