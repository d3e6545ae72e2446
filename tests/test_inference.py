"""The one scoring path: padding/masking, the bounded compile cache, NaN detection."""

from __future__ import annotations

import cv2
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aird_jax import inference


class _Toy(nn.Module):
    """Two logits from the mean colour: a model whose scores differ for every input."""

    scale: float = 1.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        return {"logits": nn.Dense(2)(self.scale * x.mean(axis=(1, 2)))}


def _toy(scale: float = 1.0):
    model = _Toy(scale)
    return model, model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))


def test_score_images_pads_once_and_matches_a_direct_forward():
    model, variables = _toy()
    x = np.random.default_rng(0).random((7, 8, 8, 3), dtype=np.float32)
    got = inference.score_images(inference.Scorer(model, variables), x, batch_size=3)
    # Reference: softmax of an unbatched, unpadded, unjitted apply, in float64.
    logits = np.asarray(model.apply(variables, x)["logits"], np.float64)
    ref = np.exp(logits[:, 1]) / np.exp(logits).sum(-1)
    assert got.shape == (7,)
    np.testing.assert_allclose(got, ref, atol=1e-6)
    batches = list(inference.image_batches(x, 3))
    assert [b["image"].shape[0] for b in batches] == [3, 3, 3]
    assert [int(b["mask"].sum()) for b in batches] == [3, 3, 1]


def test_score_batches_drops_padding_and_flags_nan():
    model, variables = _toy()
    scorer = inference.Scorer(model, variables)
    x = np.ones((4, 8, 8, 3), np.float32)
    batch = {
        "image": x,
        "label": np.array([0, 1, 1, 0]),
        "video_id": np.array(["a", "b", "c", ""]),
        "mask": np.array([True, True, True, False]),
    }
    s, y, v = inference.score_batches(scorer, [batch])
    assert list(y) == [0, 1, 1] and list(v) == ["a", "b", "c"] and s.shape == (3,)
    x[3] = np.nan  # NaN in the padding is ignored, in a real frame it is an error
    inference.score_batches(scorer, [batch])
    x[0] = np.nan
    with pytest.raises(inference.NonFiniteScores):
        inference.score_batches(scorer, [batch])


def test_forward_cache_is_bounded_and_reused():
    inference._FORWARDS.clear()
    models = [_Toy(float(k)) for k in range(inference._CACHE_SIZE + 3)]
    fns = [inference.jitted_forward(m) for m in models]
    assert len(inference._FORWARDS) == inference._CACHE_SIZE
    assert inference.jitted_forward(models[-1]) is fns[-1]  # most recent: still cached
    assert inference.jitted_forward(models[0]) is not fns[0]  # evicted: compiled anew


def test_prepare_batch_is_the_pipeline_transform():
    # The rule, written out: bicubic when any side grows, area-averaging when both shrink.
    rng = np.random.default_rng(1)
    cases = [((20, 40), cv2.INTER_CUBIC), ((64, 33), cv2.INTER_AREA), ((32, 32), None)]
    crops = [rng.integers(0, 256, s + (3,), dtype=np.uint8) for s, _ in cases]
    got = inference.prepare_batch(crops, 32)
    for g, c, (_, interp) in zip(got, crops, cases):
        ref = c if interp is None else cv2.resize(c, (32, 32), interpolation=interp)
        np.testing.assert_allclose(g, ref.astype(np.float64) / 255.0, rtol=1e-6, atol=0)
    assert got.dtype == np.float32 and got.shape == (2 + 1, 32, 32, 3)
