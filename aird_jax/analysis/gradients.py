"""One forward and one backward pass per batch for both gradient analyses: the fake logit's
gradient with respect to the gray image's block-DCT coefficients (``saliency.py``) and with
respect to the RGB stream's last feature map (``gradcam.py``), plus the model's outputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from aird_jax.analysis import gradcam, saliency


def fake_logit_pass(
    apply: Callable[..., Any],
    variables: dict,
    images: jax.Array,
    score: Callable[[Any], jax.Array],
) -> dict[str, Any]:
    """``outputs`` of ``apply(variables, images)``, ``coefficient_grad`` (d score / dC,
    ``[B, H, W, 1]`` in the block-DCT layout) and, when the model has the Grad-CAM hooks,
    ``feature_map`` and ``feature_grad`` (d score / dA).

    ``apply(variables, x, mutable=[...])`` is ``model.apply`` with ``train=False`` bound. Scores
    are summed over the batch: in inference mode the examples do not interact, so each
    example's gradient is its own score's. The outputs are those of ``images`` itself
    (``x(C0) = images`` exactly).
    """
    c0, to_image = saliency.reparametrize(images)
    pert = gradcam.zero_perturbations(apply, variables, images)

    def total(c: jax.Array, p: dict) -> tuple[jax.Array, tuple[Any, Any]]:
        v = {**variables, "perturbations": p} if p else variables
        out, state = apply(v, to_image(c), mutable=["intermediates"])
        return jnp.sum(score(out)), (out, dict(state).get("intermediates", {}))

    (g_c, g_p), (out, inter) = jax.grad(total, argnums=(0, 1), has_aux=True)(c0, pert)
    res = {"outputs": out, "coefficient_grad": g_c}
    if pert:
        res["feature_map"] = gradcam.hooked(inter)
        res["feature_grad"] = gradcam.hooked(g_p)
    return res
