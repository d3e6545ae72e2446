"""Weight port vs timm/PyTorch: architecture sizes, float64 feature parity, strictness, the CLI.

timm is imported through ``aird_jax.models.torch_reference.import_timm`` (it works around a
torchvision whose compiled ops do not load beside the CPU torch wheel used here).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from aird_jax.config import load_config
from aird_jax.models import build_model, count_params, load_pretrained
from aird_jax.models.efficientnet import VARIANTS, EfficientNet, num_features
from aird_jax.models.port import load_state_dict, load_variables, main, port_timm_efficientnet
from aird_jax.models.torch_reference import import_timm

torch = pytest.importorskip("torch")
if importlib.util.find_spec("timm") is None:
    pytest.skip(
        "timm is not installed (pip install -e '.[test,reference]')", allow_module_level=True
    )
timm = import_timm()


def timm_model(name: str, seed: int = 0, double: bool = False):
    """Random-init timm model (no classifier) with randomised BN affine params and statistics."""
    torch.manual_seed(seed)
    m = timm.create_model(name, pretrained=False, num_classes=0)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_(0.0, 0.2, generator=g)
                mod.running_var.uniform_(0.5, 2.0, generator=g)
                mod.weight.uniform_(0.5, 1.5, generator=g)
                mod.bias.normal_(0.0, 0.2, generator=g)
    return (m.double() if double else m).eval()


def save_safetensors(model, path: Path) -> dict[str, np.ndarray]:
    from safetensors.torch import save_file

    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(path))
    return {k: v.numpy() for k, v in sd.items()}


def test_architecture_sizes_match_timm():
    """Param count (no classifier) and feature width of B0..B7 equal timm's."""
    for variant in sorted(v for v in VARIANTS if v != "efficientnet_tiny"):
        ref = timm.create_model(variant, pretrained=False, num_classes=0)
        shapes = jax.eval_shape(
            EfficientNet(variant).init, jax.random.key(0), jnp.zeros((1, 32, 32, 3))
        )
        assert count_params(shapes["params"]) == sum(p.numel() for p in ref.parameters()), variant
        assert num_features(variant) == ref.num_features, variant
    assert num_features("efficientnet_b4") == 1792


@pytest.mark.parametrize("name", ["efficientnet_b4", "tf_efficientnet_b4"])
def test_b4_port_parity_float64(name, tmp_path, x64):
    """Ported features == timm's in float64 (max rel err < 1e-6), symmetric and TF 'same' padding.

    A non-square size whose feature maps become odd exercises TF's asymmetric 'same' padding.
    """
    ref_model = timm_model(name, double=True)
    path = tmp_path / f"{name}.safetensors"
    save_safetensors(ref_model, path)
    variables = port_timm_efficientnet(load_state_dict(path), name)
    assert variables["params"]["conv_stem"]["kernel"].dtype == np.float64
    x = np.random.default_rng(0).normal(size=(2, 72, 88, 3))
    with torch.no_grad():
        ref = ref_model(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    padding = "same" if name.startswith("tf_") else "symmetric"
    net = EfficientNet("efficientnet_b4", padding, dtype=jnp.float64, param_dtype=jnp.float64)
    out = np.asarray(jax.jit(net.apply)(variables, jnp.asarray(x)))
    assert out.dtype == np.float64 and out.shape == ref.shape == (2, 1792)
    rel = np.max(np.abs(out - ref)) / np.max(np.abs(ref))
    assert rel < 1e-6, rel


def test_port_is_strict():
    ref = timm.create_model("efficientnet_b0", pretrained=False, num_classes=1000)
    sd = {k: v.numpy() for k, v in ref.state_dict().items()}
    ported = port_timm_efficientnet(sd, "efficientnet_b0")  # classifier + counters ignored
    n = sum(
        v.size
        for k, v in sd.items()
        if not k.startswith("classifier.") and "running" not in k and "num_batches" not in k
    )
    assert count_params(ported["params"]) == n
    np.testing.assert_array_equal(
        ported["params"]["blocks_1_0"]["conv_dw"]["kernel"],
        np.transpose(sd["blocks.1.0.conv_dw.weight"], (2, 3, 1, 0)),
    )
    np.testing.assert_array_equal(
        ported["batch_stats"]["blocks_1_0"]["bn2"]["var"], sd["blocks.1.0.bn2.running_var"]
    )
    missing = dict(sd)
    del missing["blocks.2.1.se.conv_expand.bias"]
    with pytest.raises(ValueError, match=r"missing key.*blocks\.2\.1\.se\.conv_expand\.bias"):
        port_timm_efficientnet(missing, "efficientnet_b0")
    extra = dict(sd, **{"blocks.2.1.extra.weight": np.zeros(3)})
    with pytest.raises(ValueError, match=r"unexpected key.*blocks\.2\.1\.extra\.weight"):
        port_timm_efficientnet(extra, "efficientnet_b0")
    bad = dict(sd, **{"conv_head.weight": np.zeros((1280, 321, 1, 1), np.float32)})
    with pytest.raises(ValueError, match=r"shape mismatch.*conv_head\.weight"):
        port_timm_efficientnet(bad, "efficientnet_b0")
    with pytest.raises(ValueError, match="B0..B7"):
        port_timm_efficientnet(sd, "resnet50")


def test_port_cli_and_load_pretrained(tmp_path):
    """scripts/port_weights.py's main: --checkpoint (safetensors and .pth) -> weights file +
    sidecar -> load_pretrained (early fusion)."""
    ref = timm_model("efficientnet_b0", seed=3)
    ckpt = tmp_path / "b0.safetensors"
    sd = save_safetensors(ref, ckpt)
    out = tmp_path / "w" / "efficientnet_b0.msgpack"
    main(["--model", "efficientnet_b0", "--checkpoint", str(ckpt), "--out", str(out)])
    variables, meta = load_variables(out)
    assert meta["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert meta["sha256_weights"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert (meta["model"], meta["variant"], meta["padding"]) == (
        "efficientnet_b0",
        "efficientnet_b0",
        "symmetric",
    )
    assert json.loads((tmp_path / "w" / "efficientnet_b0.msgpack.json").read_text()) == meta

    pth = tmp_path / "b0.pth"
    torch.save({"state_dict": ref.state_dict()}, pth)
    out_pth = tmp_path / "pth.msgpack"
    main(["--model", "efficientnet_b0", "--checkpoint", str(pth), "--out", str(out_pth)])
    v_pth, _ = load_variables(out_pth)
    for a, b in zip(jax.tree.leaves(v_pth), jax.tree.leaves(variables)):
        np.testing.assert_array_equal(a, b)

    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["--model", "efficientnet_b0", "--checkpoint", str(tmp_path / "nope.pth")])
    with pytest.raises(ValueError, match="B0..B7"):
        main(["--model", "vit_base", "--checkpoint", str(ckpt)])

    cfg = load_config("configs/late_supcon.py:early_fusion").model
    cfg.backbone, cfg.pretrained = "efficientnet_b0", str(out)
    model = build_model(cfg)
    shapes = jax.eval_shape(model.init, {"params": jax.random.key(0)}, jnp.zeros((1, 32, 32, 3)))
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    loaded = load_pretrained(zeros, cfg)
    got = traverse_util.flatten_dict(loaded["params"]["rgb_backbone"])
    stem = got[("conv_stem", "kernel")]
    np.testing.assert_array_equal(
        stem[:, :, :3], np.transpose(sd["conv_stem.weight"], (2, 3, 1, 0))
    )
    assert not np.any(stem[:, :, 3])
    np.testing.assert_array_equal(
        loaded["batch_stats"]["rgb_backbone"]["bn1"]["mean"], sd["bn1.running_mean"]
    )
    assert not np.any(loaded["params"]["fusion"]["dense"]["kernel"])  # heads untouched
    # A weights file for another padding is refused with the command that makes the right one.
    with pytest.raises(ValueError, match="tf_efficientnet_b0"):
        load_pretrained(zeros, ml_collections.ConfigDict(dict(cfg.to_dict(), padding="same")))
