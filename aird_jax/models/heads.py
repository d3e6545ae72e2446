"""The output heads every model shares (detector and baselines), so they all train the same way.

* ``FusionMLP``: Dense 512 -> BatchNorm -> ReLU -> Dropout (the detector's fusion of its streams).
* ``ProjectionHead``: Dense 256 -> ReLU -> Dense embed_dim -> L2-normalise (SupCon embedding).
* ``output_heads``: the classifier (Dense num_classes) and the projection head, returning the
  models' output dict ``{"logits", "embedding", "features"}``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aird_jax.models.common import batch_norm

Dtype = Any


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


class FusionMLP(nn.Module):
    dropout: float
    features: int = 512
    axis_name: str | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.Dense(self.features, dtype=self.dtype, param_dtype=self.param_dtype, name="dense")(x)
        x = batch_norm("bn", self.axis_name, self.dtype, self.param_dtype)(
            x, use_running_average=not train
        )
        return nn.Dropout(self.dropout, deterministic=not train)(nn.relu(x))


class ProjectionHead(nn.Module):
    embed_dim: int
    hidden: int = 256
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = nn.relu(nn.Dense(self.hidden, name="dense0", **kw)(x))
        x = nn.Dense(self.embed_dim, name="dense1", **kw)(x)
        return l2_normalize(x.astype(jnp.float32))


def output_heads(
    features: jax.Array,
    *,
    embed_dim: int,
    train: bool,
    dropout: float = 0.0,
    num_classes: int = 2,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
) -> dict[str, jax.Array]:
    """Classifier and projection head on ``features``, as ``classifier``/``projection`` modules of
    the calling model (call it inside ``@nn.compact``; parameter names stay top-level).

    ``dropout`` > 0 drops features before the classifier only (the projection sees them all).
    Logits and embedding are float32 (for the losses); features are at least float32.
    """
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    h = features
    if dropout > 0:
        h = nn.Dropout(dropout)(h, deterministic=not train)
    logits = nn.Dense(num_classes, name="classifier", **kw)(h)
    emb = ProjectionHead(embed_dim=embed_dim, name="projection", **kw)(features)
    return {
        "logits": logits.astype(jnp.float32),
        "embedding": emb,
        "features": features.astype(jnp.promote_types(features.dtype, jnp.float32)),
    }
