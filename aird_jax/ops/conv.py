"""Depthwise 2-D convolution kernels (NHWC input, ``(k, k, 1, C)`` kernel) and conv padding rules.

Two implementations over the same kernel: XLA's native grouped convolution (fast on GPU/TPU) and a
sum of ``k * k`` shifted, strided slices (much faster on CPU, where XLA's grouped convolution and
its gradient are slow). The shifted form has a custom VJP: d(input) is itself a shifted sum and
d(kernel) a fused row loop (``_kernel_grad``), both typed for ``shard_map`` (``_match_vma``).
``depthwise="auto"`` picks by backend at trace time.

Padding: ``symmetric`` (PyTorch: pad ``(k - 1) // 2`` on each side) and ``same`` (TensorFlow: pad so
that ``out = ceil(in / stride)``, extra pixel at the end).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

PADDINGS = ("symmetric", "same")
DEPTHWISE_IMPLS = ("auto", "native", "shifted")
DENSE_IMPLS = ("auto", "native", "patches")


def conv_padding(size: int, k: int, s: int, padding: str) -> tuple[int, int]:
    """(before, after) padding of one spatial axis: ``symmetric`` (PyTorch) or ``same`` (TF)."""
    if padding == "symmetric":
        p = ((s - 1) + (k - 1)) // 2
        return p, p
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def resolve_depthwise(impl: str) -> str:
    """``auto`` -> ``shifted`` on CPU (grouped conv is slow there), else ``native``."""
    if impl not in DEPTHWISE_IMPLS:
        raise ValueError(f"depthwise={impl!r}; choose from {DEPTHWISE_IMPLS}")
    if impl == "auto":
        return "shifted" if jax.default_backend() == "cpu" else "native"
    return impl


def resolve_dense(impl: str) -> str:
    """``auto`` -> ``patches`` on CPU (its gradient is 1.3-4x faster than XLA:CPU's convolution's,
    numbers in :func:`dense_conv`), else ``native``."""
    if impl not in DENSE_IMPLS:
        raise ValueError(f"dense_conv={impl!r}; choose from {DENSE_IMPLS}")
    if impl == "auto":
        return "patches" if jax.default_backend() == "cpu" else "native"
    return impl


def _phases(xp: jax.Array, s: int) -> dict[tuple[int, int], jax.Array]:
    """Polyphase split: ``xp[:, a::s, b::s]`` for each (a, b), so every tap is a stride-1 slice.

    Strided slices inside XLA:CPU's fused loops are slow (~10x a stride-1 slice); splitting once
    turns the k*k strided reads of a stride-2 conv into s*s strided copies plus stride-1 reads.
    """
    if s == 1:
        return {(0, 0): xp}
    b, hp, wp, c = xp.shape
    return {
        (a, e): lax.slice(xp, (0, a, e, 0), (b, hp, wp, c), (1, s, s, 1))
        for a in range(s)
        for e in range(s)
    }


def _taps(xp: jax.Array, k: int, s: int, ho: int, wo: int):
    """The k*k strided windows of the padded input, one per kernel tap."""
    phases = _phases(xp, s)
    b, c = xp.shape[0], xp.shape[-1]
    for i in range(k):
        for j in range(k):
            src, di, dj = phases[(i % s, j % s)], i // s, j // s
            yield i, j, lax.slice(src, (0, di, dj, 0), (b, di + ho, dj + wo, c))


def _shifted_sum(xp: jax.Array, w: jax.Array, s: int) -> jax.Array:
    k = w.shape[0]
    ho, wo = (xp.shape[1] - k) // s + 1, (xp.shape[2] - k) // s + 1
    out = None
    for i, j, tap in _taps(xp, k, s, ho, wo):
        term = tap * w[i, j, 0]
        out = term if out is None else out + term
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _depthwise_shifted(xp: jax.Array, w: jax.Array, s: int) -> jax.Array:
    """Depthwise conv of an already padded input as a sum of k*k shifted slices."""
    return _shifted_sum(xp, w, s)


def _depthwise_shifted_fwd(xp, w, s):
    return _shifted_sum(xp, w, s), (xp, w)


def _depthwise_shifted_bwd(s, res, g):
    # Autodiff of the slices gives k*k padded copies of g that XLA:CPU does not fuse well (the
    # backward ran ~10x the forward). Instead: d(input) is itself a stride-1 shifted sum over g,
    # dilated by the stride and padded, with the kernel flipped; d(kernel) see _kernel_grad.
    xp, w = res
    k = w.shape[0]
    hp, wp = xp.shape[1], xp.shape[2]
    b, ho, wo, c = g.shape
    zero = jnp.zeros((), g.dtype)
    gp = lax.pad(
        g,
        zero,
        (
            (0, 0, 0),
            (k - 1, hp - s * (ho - 1) - 1, s - 1),
            (k - 1, wp - s * (wo - 1) - 1, s - 1),
            (0, 0, 0),
        ),
    )
    dxp = None
    for i in range(k):
        for j in range(k):
            tap = lax.slice(
                gp, (0, k - 1 - i, k - 1 - j, 0), (b, k - 1 - i + hp, k - 1 - j + wp, c)
            )
            term = tap * w[i, j, 0]
            dxp = term if dxp is None else dxp + term
    dw = _kernel_grad(xp, g, k, s).reshape(w.shape).astype(w.dtype)
    return _match_vma(dxp, xp), _match_vma(dw, w)


def _match_vma(ct: jax.Array, primal: jax.Array) -> jax.Array:
    """Give a cotangent the varying-manual-axes type of its primal (inside shard_map).

    A primal that is replicated over a mesh axis while the cotangent varies over it was
    implicitly broadcast (pvary) in the forward pass; the transpose of that is a psum.
    Outside shard_map both sets are empty and this is the identity.
    """
    extra = tuple(
        sorted(
            getattr(jax.typeof(ct), "vma", frozenset())
            - getattr(jax.typeof(primal), "vma", frozenset())
        )
    )
    return lax.psum(ct, extra) if extra else ct


# Output rows (image, row) handled per loop iteration by ``_kernel_grad``: enough to amortise the
# loop's per-iteration cost, few enough to keep the unrolled body (and compile time) small.
_DW_ROWS_PER_STEP = 16


def _kernel_grad(xp: jax.Array, g: jax.Array, k: int, s: int) -> jax.Array:
    """d(kernel) of the shifted depthwise conv: ``[k * k, C]`` sums of ``tap * g`` over (b, h, w).

    XLA:CPU's reductions over the leading axes run far below memory speed here, and one
    ``sum(tap * g)`` per tap also materialises every tap (k*k full-size copies). Instead a loop
    walks the output rows a few (image, row) pairs at a time and accumulates the products into a
    ``[k * k, Wo, C]`` array with plain element-wise adds (which XLA fuses and vectorises); only
    the final sum over ``Wo`` is a reduction, on a small array. All k*k taps of a row are read by
    one constant-index gather from the stacked polyphase components, so that the loop body is ONE
    fused kernel: with one accumulator per tap, XLA emitted k*k kernels per layer, and their
    LLVM compilation dominated the compile time of a B4 train step (same sums, same order).
    """
    b, ho, wo, c = g.shape
    acc_dtype = jnp.promote_types(g.dtype, jnp.float32)
    bu = max(d for d in range(1, min(b, _DW_ROWS_PER_STEP) + 1) if b % d == 0)
    rows = min(-(-_DW_ROWS_PER_STEP // bu), ho)
    nblk = -(-ho // rows)
    hpad = nblk * rows
    if hpad != ho:  # zero rows of g contribute nothing
        g = jnp.pad(g, ((0, 0), (0, hpad - ho), (0, 0), (0, 0)))
    reach = (k - 1) // s  # largest per-phase tap offset
    span = rows + reach
    phases = _phases(xp, s)
    keys = list(phases)
    # One [B, s*s, H', W', C] array (padded so that the padded rows' windows stay in range).
    hh = max(hpad + reach, max(p.shape[1] for p in phases.values()))
    ww = max(p.shape[2] for p in phases.values())
    stacked = jnp.stack(
        [
            jnp.pad(p, ((0, 0), (0, hh - p.shape[1]), (0, ww - p.shape[2]), (0, 0)))
            for p in phases.values()
        ],
        axis=1,
    )
    taps = [(i, j) for i in range(k) for j in range(k)]  # row-major: dw.reshape(k, k, C)
    phase = np.array([keys.index((i % s, j % s)) for i, j in taps])[:, None]
    drow = np.array([i // s for i, _ in taps])[:, None]
    cols = np.array([j // s for _, j in taps])[:, None] + np.arange(wo)[None, :]

    def body(it, acc):
        b0 = (it // nblk) * bu
        h0 = (it % nblk) * rows
        win = lax.dynamic_slice(stacked, (b0, 0, h0, 0, 0), (bu, len(keys), span, ww, c)).astype(
            acc_dtype
        )
        gr = lax.dynamic_slice(g, (b0, h0, 0, 0), (bu, rows, wo, c)).astype(acc_dtype)
        for n in range(bu):
            for r in range(rows):
                acc = acc + win[n][phase, r + drow, cols] * gr[n, r]  # [k*k, Wo, C]
        return acc

    # The carry must have the loop body's type, including shard_map's varying axes: derive the
    # zeros from g (a [Wo, C] slice of it) rather than from a fresh, replicated jnp.zeros.
    init = jnp.broadcast_to((g[0, 0] * 0).astype(acc_dtype), (k * k, wo, c))
    return lax.fori_loop(0, nblk * (b // bu), body, init).sum(axis=1)


_depthwise_shifted.defvjp(_depthwise_shifted_fwd, _depthwise_shifted_bwd)


def depthwise_conv(
    x: jax.Array, kernel: jax.Array, stride: int, padding: str, impl: str = "auto"
) -> jax.Array:
    """Depthwise 2-D convolution, NHWC input, ``(k, k, 1, C)`` kernel, both impls share params."""
    k = kernel.shape[0]
    ph = conv_padding(x.shape[1], k, stride, padding)
    pw = conv_padding(x.shape[2], k, stride, padding)
    if resolve_depthwise(impl) == "native":
        return lax.conv_general_dilated(
            x,
            kernel,
            (stride, stride),
            (ph, pw),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=x.shape[-1],
        )
    return _depthwise_shifted(jnp.pad(x, ((0, 0), ph, pw, (0, 0))), kernel, stride)


def dense_conv(
    x: jax.Array, kernel: jax.Array, stride: int, padding: str, impl: str = "auto"
) -> jax.Array:
    """Dense 2-D convolution, NHWC input, HWIO kernel; both impls share the kernel.

    ``patches`` gathers the k*k taps (``_taps``: stride-1 slices of the polyphase split) into one
    ``[pixels, k*k*C]`` matrix and multiplies it with the kernel. On XLA:CPU (2 cores, batch 8,
    3x3, float32, tcmalloc), forward + gradient, patches vs native: frequency stream 1 -> 64 at
    224 px 8.2 vs 15.8 ms, 64 -> 128 at 112 px 70 vs 103 ms (PyTorch 100), 128 -> 256 at 56 px
    56 vs 84 ms (PyTorch 84); stride 1, 32 -> 64 at 112 px 86 vs 361 ms, 128 -> 128 at 56 px 129
    vs 193 ms (B4 stem, 3 -> 48 at 224 px, kernel gradient alone, glibc: 7.8 vs 17.8 ms). Forward
    alone is within 15 % at stride 2 and up to 1.35x slower at stride 1 with many channels
    (inference only; every kxk dense conv of this package's own layers is stride 2), hence
    ``auto``'s rule
    (:func:`resolve_dense`). ``native`` is XLA's convolution (cuDNN on GPU).
    """
    kh, kw, c, o = kernel.shape
    ph = conv_padding(x.shape[1], kh, stride, padding)
    pw = conv_padding(x.shape[2], kw, stride, padding)
    if kh != kw or resolve_dense(impl) == "native":
        return lax.conv_general_dilated(
            x, kernel, (stride, stride), (ph, pw), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    xp = jnp.pad(x, ((0, 0), ph, pw, (0, 0)))
    ho, wo = (xp.shape[1] - kh) // stride + 1, (xp.shape[2] - kw) // stride + 1
    taps = [tap for _, _, tap in _taps(xp, kh, stride, ho, wo)]  # row-major (i, j): HWIO order
    patches = jnp.concatenate(taps, axis=-1).reshape(-1, kh * kw * c)
    return (patches @ kernel.reshape(kh * kw * c, o)).reshape(x.shape[0], ho, wo, o)
