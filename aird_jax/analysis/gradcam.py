"""Grad-CAM (Selvaraju et al., ICCV 2017) on the RGB stream's last feature map.

For a class score y and feature map A [h, w, K]: weights alpha_k = mean over (i, j) of
dy/dA_ijk, map = ReLU(sum_k alpha_k A_k). The score is the fake logit (log-odds of P(fake)),
so the map shows where the RGB stream finds evidence *for fake*, for real and fake faces alike.

The EfficientNet exposes its final feature map through two hooks that change nothing unless
asked for: ``sow("intermediates", "feature_map")`` (the value) and
``perturb("feature_map")`` (an added zero whose gradient is dy/dA).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from aird_jax.analysis import figio

FEATURE = "feature_map"


def grad_cam(features: jax.Array, grads: jax.Array) -> jax.Array:
    """``[B, h, w, K]`` feature map and its gradient -> ``[B, h, w]`` Grad-CAM (unnormalised)."""
    alpha = jnp.mean(grads, axis=(1, 2))  # [B, K]: global-average-pooled gradients
    cam = jnp.einsum("bhwk,bk->bhw", features, alpha, precision=jax.lax.Precision.HIGHEST)
    return jnp.maximum(cam, 0.0)


def hooked(tree: Any, name: str = FEATURE) -> Any:
    """The one entry called ``name`` anywhere in a variable collection (sow's tuple unpacked)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, tuple))
    found = [v for path, v in leaves[0] if getattr(path[-1], "key", None) == name]
    if len(found) != 1:
        raise ValueError(f"expected one '{name}' hook in the model, found {len(found)}")
    return found[0][0] if isinstance(found[0], tuple) else found[0]


def zero_perturbations(apply: Callable[..., Any], variables: dict, images: jax.Array) -> dict:
    """Zeros for the model's ``perturb`` hooks ({} for a model without any), shaped by tracing
    the model abstractly (nothing is computed)."""
    shapes = jax.eval_shape(lambda x: apply(variables, x, mutable=["perturbations"])[1], images)
    found = dict(shapes).get("perturbations", {})
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), found)


def pick_faces(methods: np.ndarray, n: int) -> np.ndarray:
    """Indices of up to ``n`` faces: alternately a real one and the next method's first ones."""
    methods = np.asarray(methods).astype(str)
    groups = ["real"] + sorted({m for m in methods if m != "real"})
    queues = {g: list(np.flatnonzero(methods == g)) for g in groups}
    out: list[int] = []
    while len(out) < n and any(queues.values()):
        for g in groups:
            if queues[g] and len(out) < n:
                out.append(int(queues[g].pop(0)))
    return np.asarray(out, np.int64)


def plot(images: np.ndarray, cams: np.ndarray, captions: list[str], stem: Path, numbers: dict):
    """Each face with its Grad-CAM (normalised to its own maximum) overlaid."""
    n = len(images)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols + 1, 4.3 * rows), squeeze=False)
    s = images.shape[1]
    im = None
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, cam, cap in zip(axes.flat, images, cams, captions):
        top = float(cam.max())
        ax.imshow(np.clip(img, 0, 1))
        im = ax.imshow(cam / top if top > 0 else cam, cmap="jet", alpha=0.45, vmin=0, vmax=1,
                       extent=(-0.5, s - 0.5, s - 0.5, -0.5), interpolation="bilinear")  # fmt: skip
        ax.set_title(cap, fontsize=10)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.02, label="Grad-CAM / its max")
    h, w = cams.shape[1:]
    note = "\n(a 1x1 map at this input size: one value per face, no spatial information)"
    fig.suptitle(
        f"Grad-CAM of the fake logit on the RGB stream's last feature map ({h}x{w})"
        + (note if h * w == 1 else "")
    )
    return figio.save(fig, stem, numbers)
