"""The paper's optimiser (Section III-G) in Optax.

    clip_by_global_norm(1.0)
    -> per group (backbone | head):  add_decayed_weights(1e-5) -> scale_by_adam(.9, .999)
                                      -> scale_by_learning_rate(SGDR schedule of that group)

Why this order: the paper's recipe is PyTorch's ``Adam(weight_decay=1e-5)`` with
``clip_grad_norm_(1.0)`` before ``optimizer.step()``. Torch clips the raw gradient, then adds
``weight_decay * param`` to it *inside* Adam (coupled L2, not AdamW's decoupled decay), so the
decay term is rescaled by Adam's second moment like any other gradient component.

Differential learning rate: the backbone group (``models.is_backbone_path``) starts at
``backbone_lr_mult * lr``. Both groups follow cosine annealing with warm restarts (SGDR,
Loshchilov & Hutter 2017) with period ``restart_epochs * steps_per_epoch`` steps and the same
floor ``min_lr``, exactly as ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(T_0,
eta_min)`` does for an optimiser with two parameter groups, stepped once per training step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from aird_jax.models import path_names

BACKBONE, HEAD = "backbone", "head"


def sgdr_schedule(
    base_lr: float, period_steps: int, min_lr: float
) -> Callable[[jax.Array | int], jax.Array]:
    """lr(t) = min_lr + (base_lr - min_lr) * (1 + cos(pi * (t mod T) / T)) / 2."""
    if period_steps <= 0:
        raise ValueError(f"SGDR period must be a positive number of steps, got {period_steps}")
    period = int(period_steps)

    def schedule(step: jax.Array | int) -> jax.Array:
        t = jnp.mod(jnp.asarray(step, jnp.int32), period).astype(jnp.float32)
        cos = 0.5 * (1.0 + jnp.cos(jnp.pi * t / period))
        return jnp.asarray(min_lr, jnp.float32) + (base_lr - min_lr) * cos

    return schedule


def param_labels(params: Any, is_backbone: Callable[[tuple[str, ...]], bool]) -> Any:
    """A tree like ``params`` holding "backbone" or "head" for each leaf."""
    return jax.tree_util.tree_map_with_path(
        lambda p, _: BACKBONE if is_backbone(tuple(path_names(p))) else HEAD, params
    )


def make_optimizer(
    optim_cfg: ml_collections.ConfigDict,
    steps_per_epoch: int,
    params: Any,
    is_backbone: Callable[[tuple[str, ...]], bool] | None = None,
) -> tuple[optax.GradientTransformation, dict[str, Callable]]:
    """The optimiser and its per-group schedules (for logging)."""
    validate_optim_config(optim_cfg)
    if is_backbone is None:
        from aird_jax.models import is_backbone_path as is_backbone
    period = int(optim_cfg.restart_epochs) * int(steps_per_epoch)
    schedules = {
        HEAD: sgdr_schedule(optim_cfg.lr, period, optim_cfg.min_lr),
        BACKBONE: sgdr_schedule(
            optim_cfg.lr * optim_cfg.backbone_lr_mult, period, optim_cfg.min_lr
        ),
    }

    def group(schedule: Callable) -> optax.GradientTransformation:
        parts = []
        if optim_cfg.weight_decay:
            parts.append(optax.add_decayed_weights(optim_cfg.weight_decay))
        parts += [
            optax.scale_by_adam(b1=optim_cfg.b1, b2=optim_cfg.b2, eps=optim_cfg.eps),
            optax.scale_by_learning_rate(schedule),
        ]
        return optax.chain(*parts)

    labels = param_labels(params, is_backbone)
    tx = optax.chain(
        optax.clip_by_global_norm(optim_cfg.clip_norm),
        optax.multi_transform({k: group(s) for k, s in schedules.items()}, labels),
    )
    return tx, schedules


def validate_optim_config(o: ml_collections.ConfigDict) -> None:
    """Reject nonsensical values with a clear message before anything is compiled."""
    checks = [
        (o.lr > 0, f"optim.lr must be > 0, got {o.lr}"),
        (o.min_lr >= 0, f"optim.min_lr must be >= 0, got {o.min_lr}"),
        (o.min_lr <= o.lr, f"optim.min_lr ({o.min_lr}) must not exceed optim.lr ({o.lr})"),
        (o.backbone_lr_mult >= 0, f"optim.backbone_lr_mult must be >= 0, got {o.backbone_lr_mult}"),
        (0 <= o.b1 < 1 and 0 <= o.b2 < 1, f"optim.b1/b2 must be in [0, 1), got {o.b1}, {o.b2}"),
        (o.eps > 0, f"optim.eps must be > 0, got {o.eps}"),
        (o.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {o.weight_decay}"),
        (o.restart_epochs >= 1, f"optim.restart_epochs must be >= 1, got {o.restart_epochs}"),
        (o.clip_norm > 0, f"optim.clip_norm must be > 0, got {o.clip_norm}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(msg)
