"""Table VI: computational cost -- parameters, FLOPs, latency and throughput, measured here.

Parameters are counted from the param tree, FLOPs come from XLA's cost analysis of the jitted
inference forward, latency and throughput are wall-clock medians on the current default device
with random weights (cost does not depend on them). Timings vary a little run to run; counts
do not.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from aird_jax.experiments import paper_tables
from aird_jax.experiments.runs import BASELINES, OURS, Options, run_config
from aird_jax.experiments.tables import Line
from aird_jax.models import build_model, count_params, registered_models

TABLE6_ROWS = {
    "MesoNet": BASELINES["MesoNet"],
    "Xception": BASELINES["Xception"],
    "F3-Net": BASELINES["F3-Net"],
    "Ours": OURS,
}


def _flops_of(compiled) -> float:
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):  # older jax: one dict per device program
        ca = ca[0] if ca else {}
    return float((ca or {}).get("flops", float("nan")))


def measure_cost(
    model_cfg, image_size: int = 224, throughput_batch: int = 32, repeats: int = 20, seed: int = 0
) -> dict[str, float]:
    """Parameters (counted), FLOPs (XLA cost analysis), latency (batch 1), throughput.

    Measured on the current default device with random weights (cost does not depend on
    them). Latency is the median of ``repeats`` timed calls after a warm-up call; throughput
    is images per second at ``throughput_batch`` (median of max(3, repeats // 4) calls).
    """
    model = build_model(model_cfg)
    k1, k2 = jax.random.split(jax.random.key(seed))
    x1 = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    variables = jax.jit(lambda a, b, x: model.init({"params": a, "dropout": b}, x, train=False))(
        k1, k2, x1
    )
    params = count_params(variables["params"])

    @jax.jit
    def fwd(v, x):
        return model.apply(v, x, train=False)["logits"]

    flops = _flops_of(fwd.lower(variables, x1).compile())

    def timed(x, n):
        jax.block_until_ready(fwd(variables, x))  # warm-up (and compile for this shape)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            jax.block_until_ready(fwd(variables, x))
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    rng = np.random.default_rng(seed)
    x1 = jnp.asarray(rng.random((1, image_size, image_size, 3), dtype=np.float32))
    latency = timed(x1, repeats)
    xb = jnp.asarray(rng.random((throughput_batch, image_size, image_size, 3), dtype=np.float32))
    tb = timed(xb, max(3, repeats // 4))
    return {
        "params": params,
        "flops": flops,
        "latency_ms": 1000.0 * latency,
        "throughput": throughput_batch / tb,
        "throughput_batch": throughput_batch,
        "image_size": image_size,
    }


def _cost_note(size: int, batch: int, smoke: bool) -> str:
    dev = jax.devices()[0]
    note = (
        f"Measured on this device: {len(jax.devices())} x {dev.device_kind} "
        f"({jax.default_backend()}), jax {jax.__version__}. Params = trainable parameters "
        "counted from the param tree (BatchNorm statistics excluded). FLOPs = XLA cost analysis "
        f"of the jitted inference forward at {size}x{size}, batch 1 (XLA counts a multiply-add "
        "as 2 FLOPs; many papers print MACs as 'FLOPs', hence the MACs line). Latency = median "
        f"wall time of the forward at batch 1 after warm-up; throughput at batch {batch}; weights "
        "random (cost does not depend on them). Paper latency device not stated (text: 63 FPS "
        "A100, 28 FPS RTX 3080). Timings vary run to run; counts do not."
    )
    if smoke:
        note += (
            f" SMOKE: the tiny smoke model (not EfficientNet-B4) at {size} px, not 224; "
            "baselines at the same size (Xception, F3-Net as xception_tiny, f3net_tiny when "
            "registered)."
        )
    return note


def compute_table6(opts: Options, log: Callable[[str], None]) -> tuple[list[Line], str]:
    """Table VI lines (one measurement each) and the note saying how they were measured."""
    registry = registered_models()
    on_cpu = jax.devices()[0].platform == "cpu"
    batch = opts.throughput_batch or (8 if opts.smoke else (32 if on_cpu else 256))
    repeats = 3 if opts.smoke else 20
    # The paper's setting is 224 px; smoke mode measures at the smoke image size (plumbing only).
    size = int(run_config(OURS, 0, True).data.image_size) if opts.smoke else 224
    cols = [
        ("Params (M)", "M"),
        ("FLOPs (G)", "G"),
        ("MACs (G) = XLA FLOPs / 2", "GMAC"),
        ("Latency (ms)", "ms"),
        (f"Throughput (img/s, batch {batch})", "img/s"),
    ]
    lines: list[Line] = []
    for row, spec in TABLE6_ROWS.items():
        name = spec.model_for(opts.smoke, registry)
        paper = paper_tables.TABLE_VI.rows[row]
        if name not in registry:
            for col, unit in cols:
                lines.append(Line(row, col, paper.get(col), status="not implemented", unit=unit))
            continue
        cfg = run_config(spec, 0, opts.smoke, opts.overrides)
        what = f"{name}, {cfg.model.backbone}" if name == "detector" else name
        log(f"  measure {row} ({what}) at {size} px ...")
        m = measure_cost(cfg.model, image_size=size, throughput_batch=batch, repeats=repeats)
        vals = {
            "M": m["params"] / 1e6,
            "G": m["flops"] / 1e9,
            "GMAC": m["flops"] / 2e9,
            "ms": m["latency_ms"],
            "img/s": m["throughput"],
        }
        for col, unit in cols:
            lines.append(Line(row, col, paper.get(col), video=[vals[unit]], unit=unit))
    return lines, _cost_note(size, batch, opts.smoke)
