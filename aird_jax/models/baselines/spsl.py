"""SPSL (Liu et al., "Spatial-Phase Shallow Learning: Rethinking Face Forgery Detection in
Frequency Domain", CVPR 2021), a baseline.

Up-sampling in face synthesis leaves its trace in the *phase* spectrum, so SPSL gives an Xception
the RGB face plus a phase-only reconstruction of it: the 2-D FFT of the grayscale face, its
magnitude set to 1 (phase kept), inverse FFT, real part (`phase_image`). That 4-channel input
goes through Xception whose first convolution takes the extra channel; the trunk starts from
ImageNet (`load_pretrained` through `adapt_spsl_pretrained`): the RGB filters as ported, the
phase channel's filters the mean of the three RGB filters (the suggestion of the issue; the
response to a phase image starts like that of a gray image of the same values).

Two choices the paper leaves open, made here: the gray image is BT.601 luma (as the project's
frequency stream), and the phase image is standardised per image (zero mean, unit variance).
Without that its values are O(1/sqrt(H*W)), three orders below the normalised RGB channels, and
the extra channel would start out ignored. The paper's "shallow" Xception (fewer middle blocks)
is not used; like DeepfakeBench we keep the full network so the comparison with the Xception
baseline isolates the phase input.

Output contract as every model: raw RGB in [0, 1], [B, H, W, 3] -> ``{"logits", "embedding",
"features"}`` (features: the 2048-d pooled trunk output).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from aird_jax.models.baselines.xception import (
    MIN_SIZE,
    XceptionDetector,
    XceptionTrunk,
    build_detector,
    heads,
    normalise,
    with_stem_kernel,
)
from aird_jax.models.common import check_images
from aird_jax.models.registry import BACKBONE, register_model
from aird_jax.ops.dct import rgb_to_gray

# Only a guard: every spectral coefficient of the phase image has magnitude 1, so its standard
# deviation is about 1 / sqrt(H * W) > 0 for any input (a constant image gives a delta).
PHASE_EPS = 1e-12


def phase_image(x: jax.Array) -> jax.Array:
    """Phase-only reconstruction of the gray face, standardised per image.

    ``x``: raw RGB [B, H, W, 3] -> [B, H, W, 1]: ``real(ifft2(exp(i * angle(fft2(gray)))))``,
    then zero mean / unit variance over each image. Computed in at least float32 (a bf16 FFT
    would lose the phase of the weak high frequencies).
    """
    ft = jnp.promote_types(x.dtype, jnp.float32)
    gray = rgb_to_gray(x.astype(ft))[..., 0]
    phase = jnp.angle(jnp.fft.fft2(gray, axes=(1, 2)))
    rec = jnp.real(jnp.fft.ifft2(jnp.exp(1j * phase), axes=(1, 2))).astype(ft)
    rec = rec - jnp.mean(rec, axis=(1, 2), keepdims=True)
    rec = rec / (jnp.std(rec, axis=(1, 2), keepdims=True) + PHASE_EPS)
    return rec[..., None]


class SPSL(XceptionDetector):
    """Xception on [normalised RGB, phase image] with the project's heads."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        check_images(x, "SPSL", MIN_SIZE)
        inp = jnp.concatenate([normalise(x), phase_image(x).astype(x.dtype)], axis=-1)
        trunk = XceptionTrunk(
            self.axis_name, self.depthwise, self.width, self.middle_blocks,
            name=BACKBONE, dtype=self.dtype, param_dtype=self.param_dtype,
        )  # fmt: skip
        return heads(self, trunk(inp, train), train)


def spsl_stem_kernel(rgb_kernel: Any) -> jax.Array:
    """ImageNet stem [3, 3, 3, C] -> [3, 3, 4, C]: RGB filters kept, the phase channel's filter
    the mean of the three."""
    k = jnp.asarray(rgb_kernel)
    return jnp.concatenate([k, jnp.mean(k, axis=2, keepdims=True)], axis=2)


def adapt_spsl_pretrained(src: Any, dst: Any) -> dict:
    """`load_pretrained` hook: the ported 3-channel trunk onto SPSL's 4-channel one."""
    del dst  # same tree as src apart from the stem kernel
    if "conv1" not in src:
        return dict(src)
    return with_stem_kernel(src, spsl_stem_kernel(src["conv1"]["kernel"]))


@register_model("spsl", adapt_pretrained=adapt_spsl_pretrained)
def build_spsl(model_cfg: Any, axis_name: str | None = None, **variant: Any) -> SPSL:
    """SPSL on the full Xception (ImageNet weights through model.pretrained)."""
    return build_detector(SPSL, model_cfg, axis_name, **variant)


@register_model("spsl_tiny", adapt_pretrained=adapt_spsl_pretrained)
def build_spsl_tiny(model_cfg: Any, axis_name: str | None = None) -> SPSL:
    """SPSL on xception_tiny's trunk (quarter width, one middle block): CPU tests and smoke runs."""
    return build_spsl(model_cfg, axis_name, width=0.25, middle_blocks=1)
