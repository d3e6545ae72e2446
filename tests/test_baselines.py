"""Baselines (MesoNet, Xception) against independent PyTorch/timm references.

* Meso-4: a PyTorch re-statement of the published Keras network, written here from the paper;
  same weights -> same outputs, and its parameter count is the published 27,977 (1 sigmoid
  output, 256 px).
* Xception: strict weight port from a random-initialised timm `legacy_xception` (randomised
  BatchNorm statistics) saved to safetensors/.pth in tmp; pooled features compared in float64.
  float64 needs `jax_enable_x64`, which must not leak into other test modules, and timm needs a
  torchvision import shim (`aird_jax.models.torch_reference.import_timm`), so that part runs in a
  subprocess (this file run as a script).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from aird_jax.cli import UserError
from aird_jax.config import load_config
from aird_jax.models import build_model, is_backbone_path, load_pretrained, validate_model_config
from aird_jax.models.baselines import xception
from aird_jax.models.port_xception import load_state_dict, main, port_timm_xception, trunk_template
from aird_jax.models.torch_reference import import_timm, torch_meso4

PUBLISHED_MESO4_PARAMS = 27_977  # Afchar et al. 2018, Sec. 3.1 (Keras, 1 sigmoid output, 256 px)


@functools.cache
def _smoke_model() -> dict:
    return load_config("configs/late_supcon.py:smoke").model.to_dict()


def _cfg(name: str = "mesonet", **kw) -> ml_collections.ConfigDict:
    """The config file's model section (smoke scale, no pretrained weights) for model ``name``,
    with the default depthwise choice ("auto"), then ``kw`` on top."""
    return ml_collections.ConfigDict(_smoke_model() | {"name": name, "depthwise": "auto"} | kw)


def _count(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def _fill(shapes, seed: int):
    """Concrete variables for a shape tree: kernels N(0, 1/fan_in), BN scale/var 1, biases and
    means 0 (a sane forward without compiling model.init)."""
    rng = np.random.default_rng(seed)

    def leaf(path, s):
        name = path[-1].key
        if name == "kernel":
            return rng.normal(0, np.prod(s.shape[:-1]) ** -0.5, s.shape).astype(s.dtype)
        return (np.ones if name in ("scale", "var") else np.zeros)(s.shape, s.dtype)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


# --------------------------------------------------------------------------------- Meso-4


def test_mesonet_param_count_matches_published_and_torch():
    torch = pytest.importorskip("torch")
    del torch
    published = torch_meso4(1, 256)
    assert sum(p.numel() for p in published.parameters()) == PUBLISHED_MESO4_PARAMS
    model = build_model(_cfg("mesonet"))
    shapes = jax.eval_shape(
        model.init, {"params": jax.random.key(0)}, jnp.zeros((1, 256, 256, 3), jnp.float32)
    )
    ours = _count(shapes["params"]["trunk"]) + _count(shapes["params"]["classifier"])
    assert ours == sum(p.numel() for p in torch_meso4(2, 256).parameters())
    # From scratch: nothing may land in the 0.1x-LR "rgb_backbone" group.
    assert set(shapes["params"]) == {"trunk", "classifier", "projection"}


def test_mesonet_matches_torch_restatement():
    torch = pytest.importorskip("torch")
    size = 64
    torch.manual_seed(0)
    ref = torch_meso4(2, size).double().eval()
    with torch.no_grad():
        for bn in ref.bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.2)
            bn.running_mean.normal_(0, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    t = lambda p: p.detach().numpy().astype(np.float32)
    conv_k = lambda w: t(w).transpose(2, 3, 1, 0)
    params = {"trunk": {}, "classifier": {"kernel": t(ref.out.weight).T, "bias": t(ref.out.bias)}}
    stats = {"trunk": {}}
    for i, (conv, bn) in enumerate(zip(ref.convs, ref.bns), start=1):
        params["trunk"][f"conv{i}"] = {"kernel": conv_k(conv.weight), "bias": t(conv.bias)}
        params["trunk"][f"bn{i}"] = {"scale": t(bn.weight), "bias": t(bn.bias)}
        stats["trunk"][f"bn{i}"] = {"mean": t(bn.running_mean), "var": t(bn.running_var)}
    params["trunk"]["fc"] = {"kernel": t(ref.fc.weight).T, "bias": t(ref.fc.bias)}

    model = build_model(_cfg("mesonet"))
    x = np.random.default_rng(0).uniform(size=(3, size, size, 3)).astype(np.float32)
    shapes = jax.eval_shape(model.init, {"params": jax.random.key(0)}, jnp.asarray(x))
    rng = np.random.default_rng(1)
    params["projection"] = jax.tree.map(
        lambda s: rng.normal(size=s.shape).astype(np.float32), shapes["params"]["projection"]
    )
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    out = apply({"params": params, "batch_stats": stats}, jnp.asarray(x))
    with torch.no_grad():
        f_ref, logits_ref = ref(torch.from_numpy(x.transpose(0, 3, 1, 2)).double())
    np.testing.assert_allclose(out["features"], f_ref.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["logits"], logits_ref.numpy(), rtol=1e-4, atol=1e-5)


def test_mesonet_interface_and_batch_stats():
    model = build_model(_cfg("mesonet"))
    x = jax.random.uniform(jax.random.key(1), (4, 64, 64, 3))
    v = jax.jit(lambda x: model.init({"params": jax.random.key(0)}, x, train=False))(x)
    out = jax.jit(lambda v, x: model.apply(v, x, train=False))(v, x)
    assert out["logits"].shape == (4, 2) and out["logits"].dtype == jnp.float32
    assert out["features"].shape == (4, 16)
    assert out["embedding"].shape == (4, 128)
    np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=-1), 1.0, rtol=1e-5)
    out_t, upd = jax.jit(
        lambda v, x: model.apply(
            v, x, train=True, rngs={"dropout": jax.random.key(2)}, mutable=["batch_stats"]
        )
    )(v, x)
    # Training-mode BN normalises with this batch's statistics and moves the running ones.
    assert not np.allclose(upd["batch_stats"]["trunk"]["bn1"]["mean"], 0.0)
    assert np.all(np.isfinite(out_t["logits"]))
    # A non-multiple of 32 still works ('same' pooling rounds up), as does the native 256.
    out_odd = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 100, 100, 3)))
    assert out_odd["params"]["trunk"]["fc"]["kernel"].shape == (4 * 4 * 16, 16)


def test_bfloat16_compute_close_to_float32():
    """Mixed precision (bf16 compute, f32 params) as on GPU: same params, close outputs, f32 out."""
    x = jax.random.uniform(jax.random.key(3), (4, 64, 64, 3))
    m32, m16 = build_model(_cfg("mesonet")), build_model(_cfg("mesonet", dtype="bfloat16"))
    v = _fill(jax.eval_shape(m32.init, {"params": jax.random.key(0)}, x), seed=0)
    o32 = jax.jit(lambda v, x: m32.apply(v, x))(v, x)
    o16 = jax.jit(lambda v, x: m16.apply(v, x))(v, x)
    assert o16["logits"].dtype == o16["embedding"].dtype == jnp.float32
    scale = float(jnp.max(jnp.abs(o32["logits"])))
    np.testing.assert_allclose(o16["logits"], o32["logits"], atol=0.05 * scale + 1e-3)
    # Xception: shapes/dtypes only (its compile is the expensive part of this file).
    mx = build_model(_cfg("xception", dtype="bfloat16"))
    vx = jax.eval_shape(mx.init, {"params": jax.random.key(0)}, jnp.zeros((1, 64, 64, 3)))
    assert {a.dtype for a in jax.tree.leaves(vx["params"])} == {jnp.dtype(jnp.float32)}
    ox = jax.eval_shape(lambda v, x: mx.apply(v, x), vx, jnp.zeros((1, 64, 64, 3)))
    assert ox["logits"].dtype == ox["features"].dtype == jnp.float32


@pytest.mark.parametrize(
    "name,shape",
    [("mesonet", (2, 16, 16, 3)), ("xception", (2, 64, 64, 1)), ("xception", (64, 64, 3))],
)
def test_bad_input_is_a_clear_error(name, shape):
    model = build_model(_cfg(name))
    with pytest.raises(ValueError, match="images|pixels"):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape))


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="model.depthwise"):
        validate_model_config(_cfg("xception", depthwise="grouped"))
    with pytest.raises(ValueError, match="model.dtype"):
        validate_model_config(_cfg("mesonet", dtype="float8"))
    with pytest.raises(ValueError, match="model.embed_dim"):
        validate_model_config(_cfg("mesonet", embed_dim=0))
    for name in ("mesonet", "xception", "xception_tiny"):
        validate_model_config(_cfg(name))


# --------------------------------------------------------------------------------- Xception


def test_xception_interface_shapes():
    model = build_model(_cfg("xception"))
    x = jnp.zeros((2, 96, 96, 3))
    v = jax.eval_shape(model.init, {"params": jax.random.key(0)}, x)
    assert set(v["params"]) == {"rgb_backbone", "classifier", "projection"}
    assert set(v["batch_stats"]) == {"rgb_backbone"}
    # The pretrained trunk, and only it, gets the 0.1x backbone learning rate.
    paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(v["params"])[0]]
    assert {is_backbone_path(p) for p in paths} == {True, False}
    assert all(is_backbone_path(p) == (p[0].key == "rgb_backbone") for p in paths)
    out = jax.eval_shape(lambda v, x: model.apply(v, x), v, x)
    assert out["logits"].shape == (2, 2)
    assert out["embedding"].shape == (2, 128)
    assert out["features"].shape == (2, xception.XCEPTION_FEATURES)


def test_xception_tiny_trains_at_smoke_size():
    """The full Xception's code path (entry/middle/exit flow, heads) at test scale, run for real
    at the smoke image size (32 px: down to 1x1 after the exit block): train-mode BN moves the
    running statistics, eval mode is deterministic, gradients reach the trunk."""
    model = build_model(_cfg("xception_tiny", depthwise="native"))
    x = jax.random.uniform(jax.random.key(0), (4, 32, 32, 3))
    # Variables from shapes + numpy (compiling Flax's init costs more than the whole step).
    v = _fill(jax.eval_shape(model.init, {"params": jax.random.key(1)}, x), seed=1)
    assert _count(v["params"]["rgb_backbone"]) < 1_000_000

    def loss(params, x):
        out, upd = model.apply(
            {"params": params, "batch_stats": v["batch_stats"]},
            x,
            train=True,
            rngs={"dropout": jax.random.key(2)},
            mutable=["batch_stats"],
        )
        return jnp.mean(out["logits"][:, 1] - out["logits"][:, 0]), (out, upd)

    (val, (out, upd)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(v["params"], x)
    assert out["logits"].shape == (4, 2) and out["features"].shape == (4, 512)
    np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=-1), 1.0, rtol=1e-5)
    old = v["batch_stats"]["rgb_backbone"]["bn1"]["mean"]
    assert not np.allclose(upd["batch_stats"]["rgb_backbone"]["bn1"]["mean"], old)
    g = grads["rgb_backbone"]["conv1"]["kernel"]
    assert np.isfinite(val) and np.all(np.isfinite(g)) and np.any(g != 0)


def test_xception_block_depthwise_impls_agree():
    """Same params, native grouped conv vs shifted slices: forward and gradients (an entry-flow
    block with its strided pool and skip conv, small widths)."""
    x = jax.random.normal(jax.random.key(0), (2, 11, 9, 8))
    blocks = {
        i: xception.XceptionBlock(8, 16, 2, 2, True, True, depthwise=i)
        for i in ("native", "shifted")
    }
    v = jax.jit(blocks["native"].init)(jax.random.key(1), x)
    loss = lambda impl: lambda v, x: jnp.sum(jnp.sin(blocks[impl].apply(v, x)))
    fn = jax.jit(jax.value_and_grad(loss("native"), argnums=(0, 1)))(v, x)
    fs = jax.jit(jax.value_and_grad(loss("shifted"), argnums=(0, 1)))(v, x)
    np.testing.assert_allclose(fn[0], fs[0], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(fn[1]), jax.tree.leaves(fs[1])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_port_reports_missing_unexpected_and_shape_errors():
    flat = {col: traverse_util.flatten_dict(t, sep="/") for col, t in trunk_template().items()}
    # Re-create a timm-named state dict from the template (OIHW for convs).
    rng = np.random.default_rng(0)
    sd = {}
    for leaves in flat.values():
        for path, sds in leaves.items():
            shape = sds.shape
            parts = path.split("/")
            mods = [p.replace("rep_", "rep.") if p.startswith("rep_") else p for p in parts[:-1]]
            leaf = {"kernel": "weight", "scale": "weight", "bias": "bias"}.get(parts[-1])
            leaf = leaf or {"mean": "running_mean", "var": "running_var"}[parts[-1]]
            arr = rng.standard_normal(shape, np.float32)
            sd[".".join([*mods, leaf])] = arr.transpose(3, 2, 0, 1) if arr.ndim == 4 else arr
    sd["fc.weight"] = np.zeros((1000, 2048), np.float32)  # ignored: the ImageNet classifier
    sd["bn1.num_batches_tracked"] = np.zeros((), np.int64)
    ported = port_timm_xception(sd)
    assert _count(ported["params"]) == _count(flat["params"])
    k = sd["block2.rep.1.conv1.weight"]  # depthwise [C, 1, 3, 3] -> [3, 3, 1, C]
    np.testing.assert_array_equal(
        ported["params"]["block2"]["rep_1"]["conv1"]["kernel"][1, 2, 0], k[:, 0, 1, 2]
    )

    # Same weights under a DataParallel prefix, 1x1 kernels stored 2-D (Cadene's original file).
    legacy = {
        "module." + n: (v[:, :, 0, 0] if n.endswith("pointwise.weight") else v)
        for n, v in sd.items()
    }
    again = port_timm_xception(legacy)
    for a, b in zip(jax.tree.leaves(ported), jax.tree.leaves(again)):
        np.testing.assert_array_equal(a, b)

    broken = dict(sd)
    del broken["block5.rep.4.pointwise.weight"]
    broken["block99.rep.1.weight"] = np.zeros(3, np.float32)
    broken["conv1.weight"] = np.zeros((32, 3, 5, 5), np.float32)
    with pytest.raises(ValueError) as err:
        port_timm_xception(broken)
    msg = str(err.value)
    assert "missing (1)" in msg and "block5/rep_4/pointwise/kernel" in msg
    assert "unexpected (1)" in msg and "block99.rep.1.weight" in msg
    assert "shape mismatch (1)" in msg and "conv1.weight" in msg


def test_missing_checkpoint_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="port_xception --source"):
        load_state_dict(tmp_path / "nope.safetensors")
    with pytest.raises(UserError, match="does not exist"):
        main(["--checkpoint", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "x.msgpack")])
    assert not (tmp_path / "x.msgpack").exists()


def test_xception_port_parity_float64_vs_timm(tmp_path):
    # find_spec, not importorskip: importing timm here may fail on torchvision (the subprocess
    # imports it through aird_jax.models.torch_reference).
    for mod in ("torch", "timm", "safetensors"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not installed (pip install -e '.[test,reference]')")
    proc = subprocess.run(
        [sys.executable, __file__, "xception-parity", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    print(res)
    assert res["ours_params"] == res["timm_params"] == 20_806_952
    assert res["ours_stats"] == res["timm_stats"]
    assert res["pth_equals_safetensors"]
    assert res["x64"] and res["dtype"] == "float64"
    assert res["max_rel_err"] < 1e-6, res
    assert res["max_abs_err_over_max"] < 1e-6, res


# ------------------------------------------------------------------- subprocess (float64 + timm)


def _xception_parity(tmp: Path) -> dict:
    jax.config.update("jax_enable_x64", True)
    import torch
    from safetensors.torch import save_file

    timm = import_timm()
    torch.manual_seed(0)
    ref = timm.create_model("legacy_xception", pretrained=False, num_classes=0).double().eval()
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    sd = {k: v.contiguous() for k, v in ref.state_dict().items()}
    save_file(sd, str(tmp / "xception.safetensors"))
    # .pth reader (a training-checkpoint layout: nested under "state_dict"), on a slice of the
    # weights to keep the file small.
    part = {k: v for k, v in sd.items() if k.startswith(("conv1.", "bn1.", "block1."))}
    torch.save({"state_dict": part, "epoch": 3}, str(tmp / "part.pth"))
    a = load_state_dict(tmp / "xception.safetensors")
    b = load_state_dict(tmp / "part.pth")
    same = b.keys() == part.keys() and all(np.array_equal(a[k], b[k]) for k in b)

    # One odd-sized image (71 px, Xception's minimum in Keras): exercises the floor rounding of
    # the valid stem convs and strided pools; torch's float64 depthwise conv is slow, keep it small.
    x = np.random.default_rng(0).uniform(size=(1, 71, 71, 3))
    with torch.no_grad():
        xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
        want = ref.forward_features((xt - 0.5) / 0.5).mean(dim=(2, 3)).numpy()

    res = {
        "x64": bool(jax.config.jax_enable_x64),
        "timm_params": sum(p.numel() for p in ref.parameters()),
        "timm_stats": sum(
            v.numel() for k, v in ref.named_buffers() if not k.endswith("num_batches_tracked")
        ),
        "pth_equals_safetensors": bool(same),
    }
    # The CPU default implementation only: test_depthwise_native_and_shifted_agree covers the
    # other, and torch's float64 depthwise conv is slow enough to keep this to one pass.
    # The user's path: port with the CLI, then model.pretrained -> load_pretrained.
    ported = main(
        ["--checkpoint", str(tmp / "xception.safetensors"), "--out", str(tmp / "x.msgpack")]
    )
    cfg = _cfg("xception", depthwise="shifted", dtype="float64", param_dtype="float64")
    cfg.pretrained = str(ported)
    model = build_model(cfg)
    shapes = jax.eval_shape(model.init, {"params": jax.random.key(0)}, jnp.asarray(x))
    rng = np.random.default_rng(1)
    # All float64, batch_stats too (Flax creates them float32 whatever param_dtype is).
    variables = jax.tree.map(lambda s: rng.normal(size=s.shape), shapes)
    variables = load_pretrained(variables, cfg)
    res["ours_params"] = _count(variables["params"]["rgb_backbone"])
    res["ours_stats"] = _count(variables["batch_stats"]["rgb_backbone"])
    got = np.asarray(jax.jit(lambda v, x: model.apply(v, x)["features"])(variables, x))
    res["dtype"] = str(got.dtype)
    big = np.abs(want) > 1e-3 * np.abs(want).max()
    res["max_rel_err"] = float(np.max(np.abs(got - want)[big] / np.abs(want)[big]))
    res["max_abs_err_over_max"] = float(np.max(np.abs(got - want)) / np.abs(want).max())
    return res


if __name__ == "__main__":
    if sys.argv[1] == "xception-parity":
        print(json.dumps(_xception_parity(Path(sys.argv[2]))))
