"""Throughput of block_dct / dct_highpass against scipy.fft.dctn over 8x8 blocks, same process.

    python scripts/bench_dct.py [--batch 32] [--size 224] [--repeats 20]

The reference is scipy's DCT-II applied to all blocks at once (``dctn`` over the two in-block
axes of a ``[B, H/8, 8, W/8, 8]`` view) in float32, which is the fastest fair use of scipy.
"Effective GB/s" counts one read and one write of the float32 image.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.fft

from aird_jax.ops.dct import block_dct, dct_highpass, highpass_mask


def scipy_block_dct(x: np.ndarray) -> np.ndarray:
    b, h, w, _ = x.shape
    t = x.reshape(b, h // 8, 8, w // 8, 8)
    return scipy.fft.dctn(t, axes=(2, 4), norm="ortho").reshape(b, h, w, 1)


def scipy_highpass(x: np.ndarray, cutoff: int = 4) -> np.ndarray:
    b, h, w, _ = x.shape
    c = scipy_block_dct(x).reshape(b, h // 8, 8, w // 8, 8)
    m = highpass_mask(cutoff)
    return (c * m[None, None, :, None, :]).reshape(b, h, w, 1)


def timeit(fn, repeats: int) -> float:
    fn()  # warm-up (and compile)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=20)
    a = p.parse_args()

    x_np = np.random.default_rng(0).random((a.batch, a.size, a.size, 1)).astype(np.float32)
    x = jax.device_put(jnp.asarray(x_np))
    nbytes = 2 * x_np.nbytes
    dct_j = jax.jit(block_dct)
    hp_j = jax.jit(lambda v: dct_highpass(v, 4))
    np.testing.assert_allclose(np.asarray(dct_j(x)), scipy_block_dct(x_np), atol=1e-4)

    rows = [
        ("block_dct", lambda: dct_j(x).block_until_ready(), lambda: scipy_block_dct(x_np)),
        ("dct_highpass", lambda: hp_j(x).block_until_ready(), lambda: scipy_highpass(x_np)),
    ]
    print(f"device: {jax.devices()[0].platform}, batch {a.batch} x {a.size}x{a.size}x1 float32")
    head = ("op", "jax img/s", "jax GB/s", "scipy img/s", "scipy GB/s", "ratio")
    print(
        "".join(
            f"{h:>{w}}" if i else f"{h:<{w}}"
            for i, (h, w) in enumerate(zip(head, (14, 12, 10, 13, 11, 8)))
        )
    )
    for name, ours, ref in rows:
        t_ours, t_ref = timeit(ours, a.repeats), timeit(ref, a.repeats)
        print(
            f"{name:<14}{a.batch / t_ours:>12.0f}{nbytes / t_ours / 1e9:>10.2f}"
            f"{a.batch / t_ref:>13.0f}{nbytes / t_ref / 1e9:>11.2f}{t_ref / t_ours:>7.2f}x"
        )
    print("ratio = scipy time / jax time (>1 means ours is faster)")


if __name__ == "__main__":
    main()
