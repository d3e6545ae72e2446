"""Models: EfficientNet, frequency stream, detector, registry (pure JAX; timm checks: test_port.py).

Everything that compiles uses ``efficientnet_tiny`` at 64 px so the module stays within its CPU
budget; B4-sized checks use ``jax.eval_shape`` (no compile, no FLOPs).
"""

from __future__ import annotations

import functools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util
from jax import lax

from aird_jax import models
from aird_jax.config import load_config
from aird_jax.models import (
    build_model,
    count_params,
    is_backbone_path,
    load_pretrained,
    register_model,
    registered_models,
    validate_model_config,
)
from aird_jax.models.efficientnet import EfficientNet, MBBlock, arch_spec, num_features
from aird_jax.models.frequency import FrequencyStream
from aird_jax.models.heads import FusionMLP
from aird_jax.models.port import save_variables
from aird_jax.ops.conv import depthwise_conv, resolve_depthwise
from aird_jax.ops.dct import dct_highpass, rgb_to_gray

B, S = 4, 64
TOP_LEVEL = {
    "late": {"rgb_backbone", "freq_stream", "fusion", "classifier", "projection"},
    "early": {"rgb_backbone", "fusion", "classifier", "projection"},
    "rgb_only": {"rgb_backbone", "fusion", "classifier", "projection"},
    "freq_only": {"freq_stream", "fusion", "classifier", "projection"},
}


@functools.cache
def _smoke_model() -> dict:
    return load_config("configs/late_supcon.py:smoke").model.to_dict()


def model_cfg(**kw) -> ml_collections.ConfigDict:
    """The config file's model section (smoke scale: efficientnet_tiny, no pretrained weights),
    with the depthwise choice and stochastic depth of the paper, then ``kw`` on top."""
    # merged before ConfigDict so that a wrongly-typed value reaches the validator
    return ml_collections.ConfigDict(
        _smoke_model() | {"depthwise": "auto", "drop_path_rate": 0.2} | kw
    )


def images(seed: int = 0, n: int = B, size: int = S) -> jax.Array:
    return jax.random.uniform(jax.random.key(seed), (n, size, size, 3))


def test_b4_param_count_and_feature_width():
    """The figure timm's efficientnet_b4 has without its classifier (also checked vs timm)."""
    net = EfficientNet("efficientnet_b4")
    shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    assert count_params(shapes["params"]) == 17_548_616
    out = jax.eval_shape(net.apply, shapes, jnp.zeros((2, 224, 224, 3)))
    assert out.shape == (2, 1792) == (2, num_features("efficientnet_b4"))


@pytest.mark.parametrize("fusion", list(TOP_LEVEL))
def test_b4_detector_shapes_every_fusion(fusion):
    """Shape-level check of the real B4 detector (eval_shape: no compile)."""
    model = build_model(model_cfg(backbone="efficientnet_b4", fusion=fusion))
    x = jnp.zeros((2, 224, 224, 3))
    shapes = jax.eval_shape(model.init, {"params": jax.random.key(0)}, x)
    assert set(shapes["params"]) == TOP_LEVEL[fusion]
    out = jax.eval_shape(model.apply, shapes, x)
    assert out["logits"].shape == (2, 2) and out["embedding"].shape == (2, 128)
    assert out["features"].shape == (2, 512)
    fused_in = shapes["params"]["fusion"]["dense"]["kernel"].shape[0]
    assert (
        fused_in == {"late": 1792 + 256, "early": 1792, "rgb_only": 1792, "freq_only": 256}[fusion]
    )
    if fusion == "early":  # the DCT map is the stem's 4th input channel
        assert shapes["params"]["rgb_backbone"]["conv_stem"]["kernel"].shape == (3, 3, 4, 48)


def random_variables(model, x, seed: int):
    """Variables with the shapes ``model.init`` gives, drawn with numpy (no init compile).

    XLA:CPU takes ~0.2 s to compile each threefry draw, so a jitted init of even the tiny model
    costs more than its forward pass; the tests share one real init (``test_init_runs``) and
    use these elsewhere. Non-trivial BN statistics make the checks sharper than a fresh init.
    """
    return random_variables_plain(model, x, seed, {"params": jax.random.key(0)})


def random_variables_plain(model, x, seed: int, rngs=None, **kwargs):
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(functools.partial(model.init, **kwargs), rngs or jax.random.key(0), x)

    def draw(path, s):
        name = path[-1].key
        if name == "kernel":
            return rng.normal(0, 1 / np.sqrt(np.prod(s.shape[:-1])), s.shape)
        if name in ("scale", "var"):
            return rng.uniform(0.5, 1.5, s.shape)
        return rng.normal(0, 0.1, s.shape)  # bias, mean

    return jax.tree_util.tree_map_with_path(lambda p, s: jnp.asarray(draw(p, s), s.dtype), shapes)


@functools.cache
def tiny_variables(fusion: str, seed: int = 0):
    return random_variables(build_model(model_cfg(fusion=fusion)), images(), seed)


def test_init_runs():
    """Real (jitted) inits: finite, deterministic in the seed, BN stats start at 0 / 1.

    The frequency-only detector and one MBConv block keep the threefry compile cost small.
    """
    model = build_model(model_cfg(fusion="freq_only"))
    init = jax.jit(model.init)
    v = init({"params": jax.random.key(0)}, images())
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(v))
    bs = traverse_util.flatten_dict(v["batch_stats"])
    assert all(np.all(bs[k] == (1.0 if k[-1] == "var" else 0.0)) for k in bs)
    again = init({"params": jax.random.key(0)}, images(1))  # params do not depend on the data
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(again)))
    other = init({"params": jax.random.key(1)}, images())
    k = v["params"]["freq_stream"]["conv0"]["kernel"]
    assert not np.array_equal(k, other["params"]["freq_stream"]["conv0"]["kernel"])
    # Kaiming (fan_in, ReLU gain) for the from-scratch frequency CNN: std = sqrt(2 / fan_in).
    k = v["params"]["freq_stream"]["conv1"]["kernel"]
    assert abs(np.std(k) / np.sqrt(2 / (9 * 64)) - 1) < 0.05

    spec = arch_spec("efficientnet_b4")[1][10]
    block = MBBlock(spec, "symmetric", "auto", 1e-5, 0.9)
    x = jnp.zeros((1, 16, 16, spec.in_chs))
    p = jax.jit(functools.partial(block.init, train=False))(jax.random.key(0), x)["params"]
    # EfficientNet init: normal, std = sqrt(2 / fan_out), fan_out = k*k*out (k*k for depthwise).
    for name, fan_out in (("conv_pw", spec.in_chs * spec.expand), ("conv_dw", spec.kernel**2)):
        assert abs(np.std(p[name]["kernel"]) / np.sqrt(2 / fan_out) - 1) < 0.1, name


@pytest.mark.parametrize("fusion", list(TOP_LEVEL))
def test_detector_forward_train_and_eval(fusion):
    model = build_model(model_cfg(fusion=fusion))
    x = images()
    v = tiny_variables(fusion)

    @jax.jit
    def run(v, x):
        out_tr, upd = model.apply(
            v,
            x,
            train=True,
            rngs={"dropout": jax.random.key(2)},
            mutable=["batch_stats", "intermediates"],
            capture_intermediates=lambda mdl, _: mdl.name == "dense",
        )
        out_ev, upd_ev = model.apply(v, x, train=False, mutable=["batch_stats"])
        # eval mode uses running statistics: a sample's output ignores the rest of the batch
        out_ev2 = model.apply(v, jnp.concatenate([x[:2], x[:2]]), train=False)
        return out_tr, upd, out_ev, upd_ev, out_ev2

    out_tr, upd, out_ev, upd_ev, out_ev2 = run(v, x)
    assert set(v["params"]) == TOP_LEVEL[fusion]
    for out in (out_tr, out_ev):
        assert out["logits"].shape == (B, 2) and out["logits"].dtype == jnp.float32
        assert out["embedding"].shape == (B, 128) and out["features"].shape == (B, 512)
        assert all(bool(jnp.all(jnp.isfinite(a))) for a in out.values())
        np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out_ev2["logits"][:2], out_ev["logits"][:2], rtol=1e-5, atol=1e-5)
    assert not np.allclose(out_tr["logits"], out_ev["logits"])  # train mode: batch stats, dropout
    old = traverse_util.flatten_dict(v["batch_stats"])
    new = traverse_util.flatten_dict(upd["batch_stats"])
    unchanged = traverse_util.flatten_dict(upd_ev["batch_stats"])
    assert old.keys() == new.keys() == unchanged.keys()
    # train=True moves the running statistics (every variance; a mean can legitimately stay 0
    # where the input is a linear map of a freshly initialised BN output); train=False does not.
    assert all(not np.allclose(old[k], new[k]) for k in old if k[-1] == "var")
    assert all(np.array_equal(old[k], unchanged[k]) for k in old)
    # Fusion BN, closed form: running mean = 0.9 * old + 0.1 * batch mean of the Dense output.
    h = np.asarray(upd["intermediates"]["fusion"]["dense"]["__call__"][0], np.float64)
    np.testing.assert_allclose(
        new[("fusion", "bn", "mean")],
        0.9 * old[("fusion", "bn", "mean")] + 0.1 * h.mean(axis=0),
        rtol=1e-4,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        new[("fusion", "bn", "var")],
        0.9 * old[("fusion", "bn", "var")] + 0.1 * h.var(axis=0),
        rtol=1e-3,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "k,stride,padding,size",
    [(3, 1, "symmetric", 9), (5, 2, "symmetric", 10), (3, 2, "same", 10), (5, 2, "same", 9)],
)
def test_depthwise_impls_agree_forward_and_grad(k, stride, padding, size):
    """Both impls == XLA's grouped conv with XLA's own padding rule, values and both gradients."""
    kx, kk, kg = jax.random.split(jax.random.key(k * 100 + stride * 10 + size), 3)
    x = jax.random.normal(kx, (2, size, size + 1, 6))
    w = jax.random.normal(kk, (k, k, 1, 6))
    # "same" = TF's rule (lax implements it); "symmetric" = PyTorch's padding=k//2 on both sides.
    pad = "SAME" if padding == "same" else [(k // 2, k // 2)] * 2
    fns = {
        "ref": lambda x, w: lax.conv_general_dilated(
            x,
            w,
            (stride, stride),
            pad,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=x.shape[-1],
        ),
        "native": lambda x, w: depthwise_conv(x, w, stride, padding, "native"),
        "shifted": lambda x, w: depthwise_conv(x, w, stride, padding, "shifted"),
    }

    @jax.jit
    def run(x, w):
        out = {n: f(x, w) for n, f in fns.items()}
        g = jax.random.normal(kg, out["ref"].shape)
        grads = {
            n: jax.grad(lambda x, w, f=f: jnp.sum(f(x, w) * g), argnums=(0, 1))(x, w)
            for n, f in fns.items()
        }
        return out, grads

    out, grads = run(x, w)
    for impl in ("native", "shifted"):
        assert out[impl].shape == out["ref"].shape
        np.testing.assert_allclose(out[impl], out["ref"], rtol=1e-5, atol=1e-5)
        for a, b in zip(grads[impl], grads["ref"]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("padding", ["symmetric", "same"])
def test_depthwise_impls_agree_in_a_block(padding):
    """Inside an MBConv block (stride 2, k=5) on the same params: features and all gradients."""
    spec = arch_spec("efficientnet_b0")[1][3]  # first block of stage 2: k5, s2, expand 6
    assert (spec.kernel, spec.stride) == (5, 2)
    x = jax.random.normal(jax.random.key(3), (2, 15, 14, spec.in_chs))
    blocks = {i: MBBlock(spec, padding, i, 1e-5, 0.9) for i in ("native", "shifted")}
    v = random_variables_plain(blocks["native"], x, 0, train=False)

    def loss(impl):
        def f(params, x):
            out, _ = blocks[impl].apply(
                {"params": params, "batch_stats": v["batch_stats"]},
                x,
                True,
                mutable=["batch_stats"],
            )
            return jnp.sum(out * jnp.cos(out)), out

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))

    (_, fn), gn = loss("native")(v["params"], x)
    (_, fs), gs = loss("shifted")(v["params"], x)
    np.testing.assert_allclose(fs, fn, rtol=1e-4, atol=1e-4)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(gs), jax.tree.leaves(gn)):
        scale = float(jnp.max(jnp.abs(b))) + 1e-6
        assert float(jnp.max(jnp.abs(a - b))) / scale < 1e-4, jax.tree_util.keystr(path)


def test_resolve_depthwise_by_backend():
    want = "shifted" if jax.default_backend() == "cpu" else "native"
    assert resolve_depthwise("auto") == want
    assert resolve_depthwise("native") == "native"
    with pytest.raises(ValueError, match="shifted"):
        resolve_depthwise("grouped")


def test_bfloat16_forward_close_to_float32():
    m32, m16 = build_model(model_cfg()), build_model(model_cfg(dtype="bfloat16"))
    x = images(7)
    v = tiny_variables("late")
    o32 = jax.jit(lambda v, x: m32.apply(v, x))(v, x)
    o16 = jax.jit(lambda v, x: m16.apply(v, x))(v, x)
    assert o16["logits"].dtype == jnp.float32  # outputs stay float32 for the loss
    for key in ("features", "logits", "embedding"):
        a, b = np.asarray(o16[key]), np.asarray(o32[key])
        rel = np.linalg.norm(a - b) / np.linalg.norm(b)
        assert rel < 0.05, (key, rel)
    assert not np.array_equal(o16["features"], o32["features"])  # bf16 really was used


@pytest.mark.parametrize(
    "field,value",
    [
        ("name", "resnet"),
        ("backbone", "efficientnet_b9"),
        ("padding", "valid"),
        ("fusion", "middle"),
        ("dct_cutoff", 9),
        ("dct_cutoff", -1),
        ("dct_cutoff", 2.5),
        ("dct_cutoff", True),
        ("dropout", 1.0),
        ("depthwise", "grouped"),
        ("dtype", "float8"),
        ("embed_dim", 0),
        ("pretrained", 3),
    ],
)
def test_bad_config_raises_value_error(field, value):
    with pytest.raises(ValueError, match=f"model.{field}"):
        validate_model_config(model_cfg(**{field: value}))


def test_config_file_and_saved_run_configs_build():
    """Every variant of the config file validates and builds; so does a run's config.json
    (its JSON round trip), which has exactly the config file's keys."""
    cfg = load_config("configs/late_supcon.py")
    validate_model_config(cfg.model)
    saved = ml_collections.ConfigDict(json.loads(cfg.to_json())).model
    validate_model_config(saved)
    assert build_model(saved) == build_model(cfg.model)
    for variant in ("early_fusion", "rgb_only", "freq_only", "quickstart", "smoke"):
        m = load_config(f"configs/late_supcon.py:{variant}").model
        validate_model_config(m)
        assert build_model(m).fusion == m.fusion


def test_registry_accepts_new_models():
    assert {"detector", "mesonet", "xception", "xception_tiny"} <= set(registered_models())
    sentinel = object()

    @register_model("_test_dummy", validate=lambda cfg: None)
    def build(cfg, axis_name=None):
        return (sentinel, axis_name)

    try:
        assert build_model(model_cfg(name="_test_dummy"), axis_name="data") == (sentinel, "data")
    finally:
        models.MODELS.pop("_test_dummy")
        models.VALIDATORS.pop("_test_dummy")


def test_is_backbone_path():
    shapes = jax.eval_shape(
        build_model(model_cfg()).init, {"params": jax.random.key(0)}, jnp.zeros((1, S, S, 3))
    )
    labels = jax.tree_util.tree_map_with_path(lambda p, _: is_backbone_path(p), shapes["params"])
    for top, sub in labels.items():
        assert all(v == (top == "rgb_backbone") for v in jax.tree.leaves(sub)), top
    assert is_backbone_path(("params", "rgb_backbone", "conv_stem", "kernel"))
    assert not is_backbone_path(("fusion", "dense", "kernel"))


def test_load_pretrained_missing_file_says_how_to_port(tmp_path):
    cfg = model_cfg(
        pretrained=str(tmp_path / "efficientnet_b4.msgpack"), backbone="efficientnet_b4"
    )
    with pytest.raises(FileNotFoundError, match="port_weights.py --model efficientnet_b4"):
        load_pretrained({"params": {"rgb_backbone": {}}}, cfg)
    assert load_pretrained({"params": {}}, model_cfg()) == {"params": {}}


def test_early_fusion_zero_extended_stem_matches_rgb_only(tmp_path):
    """With the pretrained stem zero-extended, early fusion starts out equal to rgb_only."""
    x = images(9)
    rgb, early = build_model(model_cfg(fusion="rgb_only")), build_model(model_cfg(fusion="early"))
    v_rgb = tiny_variables("rgb_only")
    # Pretend the rgb_only backbone is the ImageNet checkpoint.
    path = tmp_path / "tiny.msgpack"
    backbone = {c: v_rgb[c]["rgb_backbone"] for c in ("params", "batch_stats")}
    save_variables(backbone, path, {"variant": "efficientnet_tiny", "padding": "symmetric"})
    v_early = jax.tree.map(lambda a: a, tiny_variables("early"))  # copy: the cache is shared
    v_early = load_pretrained(v_early, model_cfg(fusion="early", pretrained=str(path)))
    stem = v_early["params"]["rgb_backbone"]["conv_stem"]["kernel"]
    np.testing.assert_array_equal(stem[:, :, :3], backbone["params"]["conv_stem"]["kernel"])
    assert not np.any(stem[:, :, 3])
    # Same heads too, then the outputs must agree (the DCT channel has zero weight).
    for top in ("fusion", "classifier", "projection"):
        v_early["params"][top] = v_rgb["params"][top]
    v_early["batch_stats"]["fusion"] = v_rgb["batch_stats"]["fusion"]
    o_rgb = jax.jit(lambda v: rgb.apply(v, x))(v_rgb)
    o_early = jax.jit(lambda v: early.apply(v, x))(v_early)
    np.testing.assert_allclose(o_early["logits"], o_rgb["logits"], rtol=1e-5, atol=1e-5)
    # A backbone of the wrong size is refused with a clear message.
    with pytest.raises(ValueError, match="backbone"):
        load_pretrained(
            v_early,
            model_cfg(fusion="early", backbone="efficientnet_b0", pretrained=str(path)),
        )


def test_axis_name_gives_cross_replica_batch_norm():
    """With axis_name, BN statistics over 2 shards of 2 equal those over the whole batch of 4."""
    x = images(11)
    cfg = model_cfg(fusion="freq_only", dropout=0.0, freq_dropout=0.0)  # no dropout masks
    single, sharded = build_model(cfg), build_model(cfg, axis_name="data")
    v = tiny_variables("freq_only")

    def train(model):
        return lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])

    out, upd = jax.jit(train(single))(v, x)
    xs = x.reshape(2, 2, *x.shape[1:])
    out_s, upd_s = jax.jit(jax.vmap(train(sharded), in_axes=(None, 0), axis_name="data"))(v, xs)
    np.testing.assert_allclose(
        out_s["features"].reshape(4, -1), out["features"], rtol=1e-3, atol=1e-3
    )
    for a, b in zip(jax.tree.leaves(upd_s["batch_stats"]), jax.tree.leaves(upd["batch_stats"])):
        np.testing.assert_allclose(a[0], b, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(a[1], b, rtol=1e-4, atol=1e-6)


def test_frequency_stream_sees_highpass_of_raw_gray():
    """freq_only logits == heads(freq_stream(dct_highpass(rgb_to_gray(raw x), cutoff)))."""
    x = images(13)
    v = tiny_variables("freq_only")
    model = build_model(model_cfg(fusion="freq_only", dct_cutoff=2))
    got = jax.jit(lambda v, x: model.apply(v, x)["logits"])(v, x)

    def sub(name):
        return {c: v[c][name] for c in ("params", "batch_stats") if name in v[c]}

    def by_hand(v, x):
        f = FrequencyStream(0.3).apply(sub("freq_stream"), dct_highpass(rgb_to_gray(x), 2))
        h = FusionMLP(0.3).apply(sub("fusion"), f, False)
        return nn.Dense(2).apply(sub("classifier"), h)

    np.testing.assert_allclose(got, jax.jit(by_hand)(v, x), rtol=1e-5, atol=1e-5)
    other = jax.jit(lambda v, x: build_model(model_cfg(fusion="freq_only")).apply(v, x))(v, x)
    assert not np.allclose(other["logits"], got)  # the cutoff really reaches the DCT
