"""Optimiser: SGDR schedule vs the closed form and torch, 0.1x backbone, coupled L2, clipping."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from aird_jax import optim
from aird_jax.config import load_config


def get_config(arg: str = ""):
    return load_config(f"configs/late_supcon.py:{arg}")


def _is_backbone(path: tuple[str, ...]) -> bool:
    return path[0] == "rgb_backbone"


def _closed_form(t: int, base: float, period: int, eta_min: float) -> float:
    # SGDR (Loshchilov & Hutter 2017, eq. 5) with T_mult = 1: T_cur = t mod T_0.
    return eta_min + 0.5 * (base - eta_min) * (1 + math.cos(math.pi * (t % period) / period))


def test_schedule_matches_closed_form_and_torch():
    cfg = get_config().optim
    steps_per_epoch = 7
    period = cfg.restart_epochs * steps_per_epoch
    params = {"rgb_backbone": {"w": jnp.zeros(3)}, "classifier": {"w": jnp.zeros(2)}}
    _, scheds = optim.make_optimizer(cfg, steps_per_epoch, params, _is_backbone)

    # torch reference: one optimiser with two groups, scheduler stepped once per training step.
    w1, w2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam(
        [{"params": [w1], "lr": cfg.lr * cfg.backbone_lr_mult}, {"params": [w2], "lr": cfg.lr}]
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        opt, T_0=period, T_mult=1, eta_min=cfg.min_lr
    )
    n = 3 * period + 5  # three restarts
    got_h = np.asarray(jax.vmap(scheds["head"])(jnp.arange(n)))
    got_b = np.asarray(jax.vmap(scheds["backbone"])(jnp.arange(n)))
    for t in range(n):
        torch_b, torch_h = (g["lr"] for g in opt.param_groups)
        ref_h = _closed_form(t, cfg.lr, period, cfg.min_lr)
        ref_b = _closed_form(t, cfg.lr * cfg.backbone_lr_mult, period, cfg.min_lr)
        np.testing.assert_allclose(got_h[t], ref_h, rtol=1e-5, atol=1e-12)
        np.testing.assert_allclose(got_b[t], ref_b, rtol=1e-5, atol=1e-12)
        np.testing.assert_allclose(got_h[t], torch_h, rtol=1e-5, atol=1e-12)
        np.testing.assert_allclose(got_b[t], torch_b, rtol=1e-5, atol=1e-12)
        opt.step()
        sched.step()
    # Warm restart really happens: back to the peak right after each period.
    assert got_h[period] == pytest.approx(cfg.lr, rel=1e-6) and got_h[period - 1] < 0.05 * cfg.lr


def _one_update(cfg, params, grads, steps_per_epoch=5):
    tx, _ = optim.make_optimizer(cfg, steps_per_epoch, params, _is_backbone)
    state = tx.init(params)
    updates, _ = tx.update(grads, state, params)
    return updates


def test_backbone_update_is_tenth_of_head_for_same_gradient():
    cfg = get_config().optim
    cfg.weight_decay = 0.0
    g = jnp.array([0.3, -0.02, 0.001])
    params = {"rgb_backbone": {"w": jnp.ones(3)}, "fusion": {"w": jnp.ones(3)}}
    grads = {"rgb_backbone": {"w": g}, "fusion": {"w": g}}
    upd = _one_update(cfg, params, grads)
    np.testing.assert_allclose(upd["rgb_backbone"]["w"], 0.1 * upd["fusion"]["w"], rtol=1e-6)
    # And the head's first Adam step is -lr * g / (|g| + eps) (bias-corrected moments).
    np.testing.assert_allclose(upd["fusion"]["w"], -cfg.lr * g / (jnp.abs(g) + cfg.eps), rtol=1e-5)


def test_weight_decay_is_coupled_like_torch_adam():
    """Three steps against torch.optim.Adam(weight_decay) + clip_grad_norm_, in float64."""
    cfg = get_config().optim
    cfg.weight_decay = 0.05  # large, so coupled vs decoupled would differ visibly
    cfg.clip_norm = 0.5
    rng = np.random.default_rng(0)
    w0 = {"rgb_backbone": rng.normal(size=4), "classifier": rng.normal(size=3)}
    gs = [{k: rng.normal(size=v.shape) for k, v in w0.items()} for _ in range(3)]

    # torch reference with the same two groups and a per-step SGDR scheduler.
    tp = {k: torch.nn.Parameter(torch.tensor(v, dtype=torch.float64)) for k, v in w0.items()}
    opt = torch.optim.Adam(
        [
            {"params": [tp["rgb_backbone"]], "lr": cfg.lr * cfg.backbone_lr_mult},
            {"params": [tp["classifier"]], "lr": cfg.lr},
        ],
        betas=(cfg.b1, cfg.b2),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        opt, T_0=cfg.restart_epochs * 1, eta_min=cfg.min_lr
    )
    for g in gs:
        for k in tp:
            tp[k].grad = torch.tensor(g[k], dtype=torch.float64)
        torch.nn.utils.clip_grad_norm_(list(tp.values()), cfg.clip_norm)
        opt.step()
        sched.step()

    with jax.enable_x64(True):
        params = {k: jnp.asarray(v) for k, v in w0.items()}
        tx, _ = optim.make_optimizer(cfg, 1, params, _is_backbone)
        state = tx.init(params)
        for g in gs:
            upd, state = tx.update({k: jnp.asarray(v) for k, v in g.items()}, state, params)
            params = jax.tree.map(lambda p, u: p + u, params, upd)
        for k in tp:
            np.testing.assert_allclose(
                np.asarray(params[k]), tp[k].detach().numpy(), rtol=1e-6, atol=1e-9
            )


def test_bad_values_rejected_with_the_field_named():
    for field, value in [("lr", -1e-4), ("clip_norm", 0.0), ("b2", 1.0), ("restart_epochs", 0)]:
        bad = get_config().optim
        bad[field] = value
        with pytest.raises(ValueError, match=field):
            optim.validate_optim_config(bad)
