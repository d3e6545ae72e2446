"""EfficientNet B0..B7 (Tan & Le, 2019) in Flax, classifier removed.

The layout mirrors the public PyTorch checkpoints (timm ``efficientnet_b*`` and
``tf_efficientnet_b*``) module for module, so that ImageNet weights port by renaming keys
(see ``port.py``):
stem ``conv_stem``/``bn1``, blocks ``blocks_{stage}_{index}`` with ``conv_pw``/``bn1``/``conv_dw``/
``bn2``/``se``/``conv_pwl``/``bn3``, head ``conv_head``/``bn2``, then global average pooling.

Two padding modes, because checkpoints differ: ``symmetric`` (PyTorch: pad ``(k - 1) // 2`` on each
side) and ``same`` (TensorFlow: pad so that ``out = ceil(in / stride)``, extra pixel at the end).

Depthwise convolutions have two implementations over the same ``(k, k, 1, C)`` kernel: XLA's native
grouped convolution (fast on GPU/TPU) and a sum of ``k * k`` shifted, strided slices (much faster on
CPU, where XLA's grouped convolution and its gradient are slow). ``depthwise="auto"`` picks by
backend at trace time.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Dtype = Any
Padding = str  # "symmetric" | "same"

PADDINGS = ("symmetric", "same")
DEPTHWISE_IMPLS = ("auto", "native", "shifted")

# (block type, repeats, kernel, stride, expansion, out channels); SE ratio 0.25 everywhere.
_BASE_ARCH: tuple[tuple[str, int, int, int, int, int], ...] = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
_SE_RATIO = 0.25
_STEM = 32
_HEAD = 1280

# name -> (width multiplier, depth multiplier, native resolution). Compound scaling from the paper;
# "efficientnet_tiny" is ours: a very small member for tests and the CPU quickstart.
VARIANTS: dict[str, tuple[float, float, int]] = {
    "efficientnet_b0": (1.0, 1.0, 224),
    "efficientnet_b1": (1.0, 1.1, 240),
    "efficientnet_b2": (1.1, 1.2, 260),
    "efficientnet_b3": (1.2, 1.4, 300),
    "efficientnet_b4": (1.4, 1.8, 380),
    "efficientnet_b5": (1.6, 2.2, 456),
    "efficientnet_b6": (1.8, 2.6, 528),
    "efficientnet_b7": (2.0, 3.1, 600),
    "efficientnet_tiny": (0.25, 0.3, 64),
}

# BatchNorm hyper-parameters of the checkpoint source. Flax momentum = 1 - PyTorch momentum.
# PyTorch-trained (symmetric padding): eps 1e-5, torch momentum 0.1. TF-trained (same padding):
# eps 1e-3, decay 0.99 as in the original TF implementation.
BN_DEFAULTS: dict[str, tuple[float, float]] = {
    "symmetric": (1e-5, 0.9),
    "same": (1e-3, 0.99),
}


def make_divisible(v: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """Nearest multiple of ``divisor``, never more than 10% below ``v`` (EfficientNet rounding)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    kind: str  # "ds" (depthwise-separable) or "ir" (inverted residual / MBConv)
    stage: int
    index: int
    in_chs: int
    out_chs: int
    kernel: int
    stride: int
    expand: int
    se_chs: int
    drop_path: float

    @property
    def name(self) -> str:
        return f"blocks_{self.stage}_{self.index}"

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.in_chs == self.out_chs


def arch_spec(variant: str, drop_path_rate: float = 0.2) -> tuple[int, list[BlockSpec], int]:
    """(stem channels, block specs, head channels) for a variant, by compound scaling."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet {variant!r}; choose from {sorted(VARIANTS)}")
    width, depth, _ = VARIANTS[variant]
    stem = make_divisible(_STEM * width)
    repeats = [int(math.ceil(r * depth)) for _, r, *_ in _BASE_ARCH]
    total = sum(repeats)
    blocks: list[BlockSpec] = []
    in_chs, idx = stem, 0
    for stage, ((kind, _, k, s, e, c), n) in enumerate(zip(_BASE_ARCH, repeats)):
        out = make_divisible(c * width)
        for i in range(n):
            mid = in_chs * e
            # SE width is a fraction of the block INPUT channels, computed as in the reference
            # implementation (ratio divided by the expansion, applied to the expanded width).
            se = round(mid * (_SE_RATIO / e))
            blocks.append(
                BlockSpec(
                    kind,
                    stage,
                    i,
                    in_chs,
                    out,
                    k,
                    s if i == 0 else 1,
                    e,
                    se,
                    drop_path_rate * idx / total,
                )
            )
            in_chs, idx = out, idx + 1
    return stem, blocks, make_divisible(_HEAD * width)


def num_features(variant: str) -> int:
    """Width of the pooled feature vector (1792 for B4)."""
    return arch_spec(variant)[2]


def _pads(size: int, k: int, s: int, padding: Padding) -> tuple[int, int]:
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
    walks the output rows a few (image, row) pairs at a time and accumulates each tap's products
    into a ``[Wo, C]`` row with plain element-wise adds (which XLA fuses and vectorises); only the
    final sum over ``Wo`` is a reduction, on a tiny array.
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
    for key, src in phases.items():  # pad so that the padded rows' windows stay in range
        if src.shape[1] < hpad + reach:
            phases[key] = jnp.pad(src, ((0, 0), (0, hpad + reach - src.shape[1]), (0, 0), (0, 0)))

    def body(it, acc):
        b0 = (it // nblk) * bu
        h0 = (it % nblk) * rows
        win = {
            key: lax.dynamic_slice(src, (b0, h0, 0, 0), (bu, span, src.shape[2], c)).astype(
                acc_dtype
            )
            for key, src in phases.items()
        }
        gr = lax.dynamic_slice(g, (b0, h0, 0, 0), (bu, rows, wo, c)).astype(acc_dtype)
        out = []
        for i in range(k):
            for j in range(k):
                xr, di, dj = win[(i % s, j % s)], i // s, j // s
                tot = acc[i * k + j]
                for n in range(bu):
                    for r in range(rows):
                        row = lax.slice(xr, (n, r + di, dj, 0), (n + 1, r + di + 1, dj + wo, c))
                        tot = tot + row.reshape(wo, c) * gr[n, r]
                out.append(tot)
        return tuple(out)

    # The carry must have the loop body's type, including shard_map's varying axes: derive the
    # zeros from g (a [Wo, C] slice of it) rather than from a fresh, replicated jnp.zeros.
    zero = (g[0, 0] * 0).astype(acc_dtype)
    init = tuple(zero for _ in range(k * k))
    acc = lax.fori_loop(0, nblk * (b // bu), body, init)
    return jnp.stack(acc).sum(axis=1)


_depthwise_shifted.defvjp(_depthwise_shifted_fwd, _depthwise_shifted_bwd)


def depthwise_conv(
    x: jax.Array, kernel: jax.Array, stride: int, padding: Padding, impl: str = "auto"
) -> jax.Array:
    """Depthwise 2-D convolution, NHWC input, ``(k, k, 1, C)`` kernel, both impls share params."""
    k = kernel.shape[0]
    ph = _pads(x.shape[1], k, stride, padding)
    pw = _pads(x.shape[2], k, stride, padding)
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


def _conv_init(groups_equal_out: bool = False) -> nn.initializers.Initializer:
    # "fan_out" normal init as in the reference EfficientNet; for depthwise kernels fan_out = k*k.
    if groups_equal_out:

        def init(key, shape, dtype=jnp.float32):
            std = math.sqrt(2.0 / (shape[0] * shape[1]))
            return std * jax.random.normal(key, shape, dtype)

        return init
    return nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class Conv(nn.Module):
    """Dense 2-D conv (HWIO kernel); 1x1 stride-1 convs run as a matmul (cheaper on CPU)."""

    features: int
    kernel: int = 1
    stride: int = 1
    padding: Padding = "symmetric"
    use_bias: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.param(
            "kernel",
            _conv_init(),
            (self.kernel, self.kernel, x.shape[-1], self.features),
            self.param_dtype,
        )
        x, k = x.astype(self.dtype), k.astype(self.dtype)
        if self.kernel == 1 and self.stride == 1:
            y = lax.dot_general(x, k[0, 0], (((x.ndim - 1,), (0,)), ((), ())))
        else:
            ph = _pads(x.shape[1], self.kernel, self.stride, self.padding)
            pw = _pads(x.shape[2], self.kernel, self.stride, self.padding)
            y = lax.conv_general_dilated(
                x,
                k,
                (self.stride, self.stride),
                (ph, pw),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
            y = y + bias.astype(self.dtype)
        return y


class DepthwiseConv(nn.Module):
    kernel: int
    stride: int = 1
    padding: Padding = "symmetric"
    impl: str = "auto"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.param(
            "kernel",
            _conv_init(True),
            (self.kernel, self.kernel, 1, x.shape[-1]),
            self.param_dtype,
        )
        return depthwise_conv(
            x.astype(self.dtype), k.astype(self.dtype), self.stride, self.padding, self.impl
        )


class SqueezeExcite(nn.Module):
    reduced: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = dict(use_bias=True, dtype=self.dtype, param_dtype=self.param_dtype)
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = nn.silu(Conv(self.reduced, name="conv_reduce", **kw)(s))
        s = Conv(x.shape[-1], name="conv_expand", **kw)(s)
        return x * nn.sigmoid(s)


def drop_path(x: jax.Array, rate: float, rng: jax.Array) -> jax.Array:
    """Stochastic depth: drop the whole residual branch per sample, rescale the kept ones."""
    keep = jax.random.bernoulli(rng, 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype))


class MBBlock(nn.Module):
    """Depthwise-separable ("ds") or inverted-residual MBConv ("ir") block with SE."""

    spec: BlockSpec
    padding: Padding
    depthwise: str
    bn_eps: float
    bn_momentum: float
    axis_name: str | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def bn(self, name: str) -> nn.BatchNorm:
        return nn.BatchNorm(
            momentum=self.bn_momentum,
            epsilon=self.bn_eps,
            axis_name=self.axis_name,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=name,
        )

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        sp = self.spec
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        shortcut = x
        if sp.kind == "ir":
            x = Conv(sp.in_chs * sp.expand, name="conv_pw", **kw)(x)
            x = nn.silu(self.bn(name="bn1")(x, use_running_average=not train))
            dw_bn, out_bn = "bn2", "bn3"
        else:
            dw_bn, out_bn = "bn1", "bn2"
        x = DepthwiseConv(sp.kernel, sp.stride, self.padding, self.depthwise, name="conv_dw", **kw)(
            x
        )
        x = nn.silu(self.bn(name=dw_bn)(x, use_running_average=not train))
        x = SqueezeExcite(sp.se_chs, name="se", **kw)(x)
        x = Conv(sp.out_chs, name="conv_pwl" if sp.kind == "ir" else "conv_pw", **kw)(x)
        x = self.bn(name=out_bn)(x, use_running_average=not train)
        if sp.has_skip:
            if train and sp.drop_path > 0:
                x = drop_path(x, sp.drop_path, self.make_rng("dropout"))
            x = x + shortcut
        return x


class EfficientNet(nn.Module):
    """EfficientNet feature extractor: ``[B, H, W, C] -> [B, num_features]`` (pooled).

    Inputs are expected already normalised (ImageNet mean/std); the detector does that.
    ``axis_name`` makes every BatchNorm use cross-replica statistics.
    """

    variant: str = "efficientnet_b4"
    padding: Padding = "symmetric"
    drop_path_rate: float = 0.2
    depthwise: str = "auto"
    bn_eps: float | None = None  # None: per checkpoint source (BN_DEFAULTS[padding])
    bn_momentum: float | None = None
    axis_name: str | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.padding not in PADDINGS:
            raise ValueError(f"padding={self.padding!r}; choose from {PADDINGS}")
        stem, blocks, head = arch_spec(self.variant, self.drop_path_rate)
        eps, mom = BN_DEFAULTS[self.padding]
        eps = eps if self.bn_eps is None else self.bn_eps
        mom = mom if self.bn_momentum is None else self.bn_momentum
        bn = lambda name: nn.BatchNorm(  # noqa: E731
            momentum=mom,
            epsilon=eps,
            axis_name=self.axis_name,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=name,
        )
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = Conv(stem, 3, 2, self.padding, name="conv_stem", **kw)(x)
        x = nn.silu(bn("bn1")(x, use_running_average=not train))
        for sp in blocks:
            x = MBBlock(
                sp, self.padding, self.depthwise, eps, mom, self.axis_name, name=sp.name, **kw
            )(x, train)
        x = Conv(head, name="conv_head", **kw)(x)
        x = nn.silu(bn("bn2")(x, use_running_average=not train))
        return jnp.mean(x, axis=(1, 2))


def count_params(tree: Any) -> int:
    return sum(math.prod(p.shape) for p in jax.tree.leaves(tree))
