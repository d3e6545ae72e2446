"""DCT-coefficient saliency: mean |d fake-logit / d C(u, v)| for each of the 64 block-DCT
frequencies of the gray face, per method (the paper: high-loading components "cluster along
diagonals in the high-frequency region").

The input is reparametrised by the 8x8 block-DCT coefficients C of its BT.601 gray image:
``x(C) = x0 + IDCT(C - C0)`` added to all three channels (the BT.601 weights sum to 1, so the
gray image moves by exactly ``IDCT(C - C0)``), and ``x(C0) = x0``. Both streams see the change,
so low frequencies the frequency stream never receives still matter through the RGB stream.
Because the block DCT is orthonormal, ``d/dC = DCT(sum over channels of d/dx)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.patches as patches
import matplotlib.pyplot as plt
import numpy as np

from aird_jax.analysis import figio
from aird_jax.ops.dct import block_dct, block_idct, rgb_to_gray

BLOCK = 8


def reparametrize(rgb01: jax.Array) -> tuple[jax.Array, Callable[[jax.Array], jax.Array]]:
    """``(C0, to_image)``: the gray image's block-DCT coefficients and ``C -> x(C)``."""
    x = jnp.asarray(rgb01, jnp.float32)
    c0 = block_dct(rgb_to_gray(x))

    def to_image(c: jax.Array) -> jax.Array:
        return x + block_idct(c - c0)  # [B, H, W, 1] broadcasts over the 3 channels

    return c0, to_image


def per_frequency(grads: jax.Array) -> jax.Array:
    """``[B, H, W, 1]`` coefficient gradients -> ``[B, 8, 8]`` mean |.| over each face's blocks."""
    g = jnp.abs(grads)[..., 0]
    b, h, w = g.shape
    return g.reshape(b, h // BLOCK, BLOCK, w // BLOCK, BLOCK).mean(axis=(1, 3))


def by_method(maps: np.ndarray, methods: np.ndarray, cutoff: int) -> dict[str, dict]:
    """Mean 8x8 saliency per method (``real`` first), with the share outside the cutoff corner."""
    maps = np.asarray(maps, np.float64)
    methods = np.asarray(methods).astype(str)
    names = sorted(set(methods.tolist()), key=lambda m: (m != "real", m))
    low = np.zeros((BLOCK, BLOCK), bool)
    low[:cutoff, :cutoff] = True
    out = {}
    for m in names:
        mean = maps[methods == m].mean(axis=0)
        total = float(mean.sum())
        out[m] = {
            "n": int(np.sum(methods == m)),
            "mean_abs_grad": mean,
            "highpass_share": float(mean[~low].sum()) / total if total > 0 else None,
        }
    return out


def plot(groups: dict[str, dict], cutoff: int, stem: Path, numbers: dict):
    """One 8x8 heat map per method on a shared colour scale; the cut-off corner outlined."""
    n = len(groups)
    fig, axes = plt.subplots(
        1, n, figsize=(3.6 * n + 1.2, 4.4), squeeze=False, layout="constrained"
    )
    top = max(float(g["mean_abs_grad"].max()) for g in groups.values()) or 1.0
    im = None
    for ax, (m, g) in zip(axes[0], groups.items()):
        im = ax.imshow(g["mean_abs_grad"], cmap="inferno", vmin=0, vmax=top)
        if cutoff:
            ax.add_patch(patches.Rectangle((-0.5, -0.5), cutoff, cutoff, ec="cyan", fc="none",
                                           ls="--", lw=1.5))  # fmt: skip
        share = g["highpass_share"]
        note = "" if share is None else f"\nhigh-pass share {share:.2%}"
        ax.set_title(f"{m} (n={g['n']})" + note)
        ax.set_xlabel("v")
        ax.set_ylabel("u")
        ax.set_xticks(range(BLOCK))
        ax.set_yticks(range(BLOCK))
    fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.02, label="mean |d fake-logit / dC(u,v)|")
    fig.suptitle(f"DCT-coefficient saliency per method (dashed: the {cutoff}x{cutoff} corner the "
                 "frequency stream never sees)")  # fmt: skip
    return figio.save(fig, stem, numbers)
