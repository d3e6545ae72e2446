"""Training objectives (paper Section III-E/F).

``L_total = L_CE + lambda * L_con`` with the supervised contrastive loss of Khosla et al.
(NeurIPS 2020, "Supervised Contrastive Learning"), ``L_out`` form (eq. 6 of the paper).
All functions are pure and jittable; labels are integers with 1 = fake, 0 = real.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def supcon_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    temperature: float = 0.07,
    mask: jax.Array | None = None,
) -> jax.Array:
    """Supervised contrastive loss on L2-normalised ``[B, D]`` embeddings.

    For each anchor ``i`` with at least one positive (another sample with the same label),
    ``l_i = -1/|P(i)| * sum_{p in P(i)} log( exp(z_i.z_p/t) / sum_{k != i} exp(z_i.z_k/t) )``.
    The result is the mean of ``l_i`` over anchors that have a positive, or 0 when none does.

    The paper writes a sum over anchors (eq. 6); we take the mean, as Khosla et al. do, so the
    weight ``lambda = 0.5`` does not change meaning with the batch size.

    ``mask`` (optional, ``[B]`` bool) drops padded samples: they are neither anchors nor
    contrasted against.
    """
    z = embeddings.astype(jnp.float32)
    labels = labels.reshape(-1)
    n = z.shape[0]
    valid = jnp.ones((n,), bool) if mask is None else mask.reshape(-1).astype(bool)

    # Logits of every pair; the log-sum-exp below is stable at t = 0.07 (|logit| <= 1/t).
    logits = (z @ z.T) / temperature
    eye = jnp.eye(n, dtype=bool)
    # Denominator runs over k != i (self-pair excluded) and over valid samples only.
    contrast = (~eye) & valid[None, :] & valid[:, None]
    # A large finite negative (not -inf) keeps rows without any partner NaN-free, in the
    # forward and the backward pass; exp() of it underflows to exactly 0.
    logits = jnp.where(contrast, logits, -1e9)
    log_denom = jax.nn.logsumexp(logits, axis=1, keepdims=True)
    log_prob = jnp.where(contrast, logits - log_denom, 0.0)

    positives = contrast & (labels[:, None] == labels[None, :])
    num_pos = positives.sum(axis=1)
    has_pos = num_pos > 0
    mean_log_prob_pos = jnp.where(positives, log_prob, 0.0).sum(axis=1) / jnp.maximum(num_pos, 1)
    per_anchor = jnp.where(has_pos, -mean_log_prob_pos, 0.0)
    n_anchors = has_pos.sum()
    return jnp.where(n_anchors > 0, per_anchor.sum() / jnp.maximum(n_anchors, 1), 0.0)


def classification_loss(
    logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
    """Mean 2-way softmax cross-entropy (over ``mask``-ed samples when a mask is given)."""
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    if mask is None:
        return ce.mean()
    m = mask.astype(jnp.float32)
    return (ce * m).sum() / jnp.maximum(m.sum(), 1.0)


def total_loss(
    logits: jax.Array,
    embeddings: jax.Array,
    labels: jax.Array,
    lam: float = 0.5,
    temperature: float = 0.07,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``L = L_CE + lam * L_con`` (paper eq. 7); returns the loss and its parts."""
    ce = classification_loss(logits, labels, mask)
    con = supcon_loss(embeddings, labels, temperature, mask)
    return ce + lam * con, {"ce": ce, "supcon": con}


def xray_loss(
    xray_logits: jax.Array, target: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
    """Face X-ray's map term: mean pixel-wise binary cross-entropy between the predicted X-ray
    (logits, ``[B, H, W]``) and the target boundary map ``4 M (1 - M)`` in [0, 1] (over
    ``mask``-ed samples when a mask is given)."""
    z = xray_logits.astype(jnp.float32)
    per_pixel = optax.sigmoid_binary_cross_entropy(z, target.astype(jnp.float32))
    per_sample = per_pixel.reshape(per_pixel.shape[0], -1).mean(axis=1)
    if mask is None:
        return per_sample.mean()
    m = mask.astype(jnp.float32)
    return (per_sample * m).sum() / jnp.maximum(m.sum(), 1.0)
