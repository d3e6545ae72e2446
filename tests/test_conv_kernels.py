"""The shifted depthwise kernels (``aird_jax/ops/conv.py``) against a naive float64 reference.

The custom VJP (input gradient as a shifted sum, kernel gradient as the fused row loop) is
checked in float64 against ``lax.conv_general_dilated`` autodiff and against a plain numpy loop,
at shapes that exercise the loop's corner cases: a batch that does not divide the rows per step,
output rows padded up to a whole block, stride 2 with odd and even sizes, both padding rules.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from aird_jax.ops.conv import conv_padding, dense_conv, depthwise_conv, resolve_dense


def _numpy_taps(x, k, s, padding):
    """Naive taps: ``(i, j, xp[:, s h + i, s v + j, :])`` over the output grid, plus the padding."""
    ph = conv_padding(x.shape[1], k, s, padding)
    pw = conv_padding(x.shape[2], k, s, padding)
    xp = np.pad(x, ((0, 0), ph, pw, (0, 0)))
    ho, wo = (xp.shape[1] - k) // s + 1, (xp.shape[2] - k) // s + 1
    taps = [
        (i, j, xp[:, i : i + s * (ho - 1) + 1 : s, j : j + s * (wo - 1) + 1 : s])
        for i in range(k)
        for j in range(k)
    ]
    return taps, (ph, pw)


def _numpy_depthwise(x, w, s, padding):
    """Naive loop: out[b, h, v, c] = sum_ij xp[b, s h + i, s v + j, c] w[i, j, c]."""
    taps, pads = _numpy_taps(x, w.shape[0], s, padding)
    return sum(tap * w[i, j, 0] for i, j, tap in taps), pads


@pytest.mark.parametrize(
    "batch,k,stride,padding,size",
    [
        (3, 3, 1, "symmetric", 11),
        (2, 5, 2, "symmetric", 13),
        (3, 3, 2, "same", 12),
        (1, 5, 2, "same", 9),
    ],
)
def test_shifted_depthwise_float64_matches_reference(x64, batch, k, stride, padding, size):
    rng = np.random.default_rng(batch * 1000 + k * 100 + stride * 10 + size)
    x = rng.normal(size=(batch, size, size + 2, 5))
    w = rng.normal(size=(k, k, 1, 5))
    want, (ph, pw) = _numpy_depthwise(x, w, stride, padding)
    g = rng.normal(size=want.shape)

    def ref(x, w):
        return lax.conv_general_dilated(
            x,
            w,
            (stride, stride),
            (ph, pw),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=5,
        )

    def ours(x, w):
        return depthwise_conv(x, w, stride, padding, "shifted")

    xj, wj = jnp.asarray(x), jnp.asarray(w)
    assert xj.dtype == jnp.float64
    out = jax.jit(ours)(xj, wj)
    np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jax.jit(ref)(xj, wj), want, rtol=1e-10, atol=1e-12)

    def grads(f):
        return jax.jit(jax.grad(lambda x, w: jnp.sum(f(x, w) * g), argnums=(0, 1)))(xj, wj)

    (dx, dw), (dx_ref, dw_ref) = grads(ours), grads(ref)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-10, atol=1e-11)
    # d(kernel) from the naive loop too: sum over (b, h, v) of the tap times g
    xp = np.pad(x, ((0, 0), ph, pw, (0, 0)))
    ho, wo = want.shape[1:3]
    s = stride
    for i, j in ((0, 0), (k - 1, k // 2)):
        tap = xp[:, i : i + s * (ho - 1) + 1 : s, j : j + s * (wo - 1) + 1 : s]
        np.testing.assert_allclose(dw[i, j, 0], (tap * g).sum((0, 1, 2)), rtol=1e-10)


@pytest.mark.parametrize(
    "batch,cin,stride,padding,size",
    [
        (2, 1, 2, "symmetric", 16),
        (1, 3, 2, "same", 13),
        (2, 4, 1, "symmetric", 9),
        (2, 16, 2, "symmetric", 12),  # many channels: the frequency stream's conv1/conv2 on CPU
    ],
)
def test_dense_patches_conv_float64_matches_a_naive_loop(x64, batch, cin, stride, padding, size):
    """``dense_conv(impl="patches")``: the CPU form of every kxk dense conv (stem, frequency)."""
    rng = np.random.default_rng(cin * 100 + stride * 10 + size)
    k, cout = 3, 6
    x = rng.normal(size=(batch, size, size + 1, cin))
    w = rng.normal(size=(k, k, cin, cout))
    # out[b, h, v, o] = sum_ijc xp[b, s h + i, s v + j, c] w[i, j, c, o]
    taps, _ = _numpy_taps(x, k, stride, padding)
    want = sum(np.einsum("bhvc,co->bhvo", tap, w[i, j]) for i, j, tap in taps)
    xj, wj = jnp.asarray(x), jnp.asarray(w)

    def ours(x, w):
        return dense_conv(x, w, stride, padding, "patches")

    def ref(x, w):
        return dense_conv(x, w, stride, padding, "native")  # lax.conv_general_dilated

    np.testing.assert_allclose(jax.jit(ours)(xj, wj), want, rtol=1e-10, atol=1e-12)
    g = jnp.asarray(rng.normal(size=want.shape))

    def grads(f):
        return jax.jit(jax.grad(lambda x, w: jnp.sum(f(x, w) * g), argnums=(0, 1)))(xj, wj)

    for got, ref_grad in zip(grads(ours), grads(ref), strict=True):
        np.testing.assert_allclose(got, ref_grad, rtol=1e-10, atol=1e-11)


def test_dense_conv_auto_takes_patches_on_cpu():
    # Its gradient is faster on XLA:CPU at every width measured (dense_conv's docstring).
    cpu = jax.default_backend() == "cpu"
    assert resolve_dense("auto") == ("patches" if cpu else "native")
    assert resolve_dense("patches") == "patches"
    assert resolve_dense("native") == "native"
    with pytest.raises(ValueError, match="choose from"):
        dense_conv(jnp.zeros((1, 8, 8, 1)), jnp.zeros((3, 3, 1, 2)), 2, "same", "fast")
