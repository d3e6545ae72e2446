"""Models: the registry and every registered family (importing the package registers them).

* ``registry``: ``register_model``, ``build_model``, ``validate_model_config``, parameter-path
  helpers (``is_backbone_path``, ``path_names``, ``count_params``).
* ``pretrained``: ``load_pretrained`` (ImageNet backbone from a ported weights file).
* ``detector`` (registers ``detector``), ``baselines`` (``mesonet``, ``xception``,
  ``xception_tiny``); layers in ``efficientnet``, ``frequency``, ``heads``, ``common``; weight ports
  in ``port`` (timm EfficientNet) and ``port_xception``.
"""

from aird_jax.models import baselines, detector, spectral
from aird_jax.models.pretrained import load_pretrained, port_command
from aird_jax.models.registry import (
    BACKBONE,
    MODELS,
    VALIDATORS,
    build_model,
    count_params,
    is_backbone_path,
    path_names,
    register_model,
    registered_models,
    validate_model_config,
)

__all__ = [
    "BACKBONE",
    "MODELS",
    "VALIDATORS",
    "baselines",
    "build_model",
    "count_params",
    "detector",
    "is_backbone_path",
    "load_pretrained",
    "path_names",
    "port_command",
    "register_model",
    "spectral",
    "registered_models",
    "validate_model_config",
]
