"""Figure 2: DCT filtering of one face (paper Sec. III-B, eqs. 1-3).

An 8x8 block of the BT.601 gray face, the log magnitude of its DCT, the same after the high-pass
mask (low ``cutoff x cutoff`` corner zeroed) and the whole high-pass map the frequency stream
receives (``models.frequency.highpass_map``, i.e. exactly the stream's input).
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import matplotlib.patches as patches
import matplotlib.pyplot as plt
import numpy as np

from aird_jax.analysis import figio
from aird_jax.models.frequency import highpass_map
from aird_jax.ops.dct import block_dct, highpass_mask, rgb_to_gray

BLOCK = 8
EPS = 1e-4  # floor of the log magnitude (zeroed coefficients show as log10(EPS))


def dct_numbers(rgb01: np.ndarray, cutoff: int) -> dict:
    """Numbers of the figure for one face ``[S, S, 3]`` in [0, 1]; the block is the centre one."""
    x = jnp.asarray(rgb01[None], jnp.float32)
    gray = np.asarray(rgb_to_gray(x))[0, :, :, 0]
    coeffs = np.asarray(block_dct(rgb_to_gray(x)))[0, :, :, 0]
    hp = np.asarray(highpass_map(x, cutoff))[0, :, :, 0]
    s = gray.shape[0]
    r = c = (s // BLOCK // 2) * BLOCK  # top-left corner of the centre block
    mask = highpass_mask(cutoff, BLOCK)
    blk = coeffs[r : r + BLOCK, c : c + BLOCK]
    energy = float(np.sum(coeffs**2))
    return {
        "cutoff": int(cutoff),
        "block_row": r,
        "block_col": c,
        "gray": gray,
        "block_pixels": gray[r : r + BLOCK, c : c + BLOCK],
        "block_dct": blk,
        "mask": mask,
        "block_dct_masked": blk * mask,
        "highpass_map": hp,
        # How much of the face's DCT energy the frequency stream still sees.
        "energy_kept_fraction": float(np.sum(hp**2)) / energy if energy > 0 else None,
    }


def _log_mag(a: np.ndarray) -> np.ndarray:
    return np.log10(np.abs(a) + EPS)


def plot(nums: dict, stem: Path, title: str) -> tuple[Path, Path]:
    """Five panels: the face (block marked), block pixels, block DCT, masked DCT, high-pass map."""
    fig, axes = plt.subplots(1, 5, figsize=(21, 4.6), layout="constrained")
    r, c, k = nums["block_row"], nums["block_col"], nums["cutoff"]
    ax = axes[0]
    im = ax.imshow(nums["gray"], cmap="gray", vmin=0, vmax=1)
    ax.add_patch(patches.Rectangle((c - 0.5, r - 0.5), BLOCK, BLOCK, ec="red", fc="none", lw=2))
    ax.set_title("gray face (BT.601), block in red")
    fig.colorbar(im, ax=ax, fraction=0.046)
    im = axes[1].imshow(nums["block_pixels"], cmap="gray", vmin=0, vmax=1)
    axes[1].set_title(f"8x8 block at ({r}, {c})")
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    lo, hi = float(np.log10(EPS)), float(_log_mag(nums["block_dct"]).max())
    for ax, key, name in (
        (axes[2], "block_dct", "block DCT, log10|C(u,v)|"),
        (axes[3], "block_dct_masked", f"after the mask (cutoff {k})"),
    ):
        im = ax.imshow(_log_mag(nums[key]), cmap="viridis", vmin=lo, vmax=hi)
        ax.set_xlabel("v (horizontal frequency)")
        ax.set_ylabel("u (vertical frequency)")
        ax.set_title(name)
        fig.colorbar(im, ax=ax, fraction=0.046)
    ax = axes[4]
    im = ax.imshow(_log_mag(nums["highpass_map"]), cmap="magma", vmin=lo)
    kept = nums["energy_kept_fraction"]
    share = "" if kept is None else f"\n{100 * kept:.3g}% of the DCT energy"
    ax.set_title("frequency-stream input, log10|.|" + share)
    fig.colorbar(im, ax=ax, fraction=0.046)
    for i in (0, 1, 4):  # pixel panels: ticks say nothing
        axes[i].set_xticks([])
        axes[i].set_yticks([])
    fig.suptitle(title)
    return figio.save(fig, stem, nums)
