"""Baselines' speed against PyTorch, side by side in one process (images/s and the ratio).

    python scripts/bench_baselines.py [--model xception|mesonet|all] [--size 299] [--batch 8]

Ours: jitted Flax forward (eval) and train step (CE + Adam, batch statistics updated), depthwise
implementation as `--depthwise` (auto = shifted slices on CPU). Reference: timm `legacy_xception`
and a PyTorch Meso-4 (`aird_jax.models.torch_reference`, also the tests' reference), eager,
channels_last, same batch, same optimiser. Also prints XLA's FLOP count per image and the compile
times. The model section is the config file's (configs/late_supcon.py), with name and depthwise.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aird_jax.config import load_config
from aird_jax.models import build_model
from aird_jax.models.torch_reference import import_timm, torch_meso4


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_ours(name: str, x: np.ndarray, y: np.ndarray, depthwise: str, repeats: int) -> dict:
    cfg = load_config("configs/late_supcon.py").model
    cfg.name, cfg.depthwise = name, depthwise
    model = build_model(cfg)
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    variables = jax.jit(lambda x: model.init({"params": jax.random.key(0)}, x))(xj[:1])
    opt = optax.adam(1e-4)
    opt_state = opt.init(variables["params"])

    fwd = jax.jit(lambda v, x: model.apply(v, x, train=False)["logits"])

    def step(params, stats, opt_state, x, y, rng):
        def loss_fn(p):
            out, upd = model.apply(
                {"params": p, "batch_stats": stats},
                x,
                train=True,
                rngs={"dropout": rng},
                mutable=["batch_stats"],
            )
            ce = optax.softmax_cross_entropy_with_integer_labels(out["logits"], y).mean()
            return ce, upd["batch_stats"]

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state, loss

    step = jax.jit(step, donate_argnums=(0, 1, 2))
    t = time.perf_counter()
    lowered = fwd.lower(variables, xj)
    compiled = lowered.compile()
    fwd_compile = time.perf_counter() - t
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    flops = float(cost.get("flops", float("nan"))) / x.shape[0]
    fwd_s = _best(lambda: fwd(variables, xj).block_until_ready(), repeats)

    state = (variables["params"], variables["batch_stats"], opt_state)
    t = time.perf_counter()
    *state, loss = step(*state, xj, yj, jax.random.key(1))
    loss.block_until_ready()
    step_compile = time.perf_counter() - t

    def run_step():
        nonlocal state
        *state, loss = step(*state, xj, yj, jax.random.key(1))
        loss.block_until_ready()

    step_s = _best(run_step, repeats)
    return {
        "fwd": x.shape[0] / fwd_s,
        "step": x.shape[0] / step_s,
        "flops": flops,
        "fwd_compile": fwd_compile,
        "step_compile": step_compile,
    }


def bench_torch(name: str, x: np.ndarray, y: np.ndarray, repeats: int) -> dict:
    import torch

    if name == "xception":
        timm = import_timm()
        net = timm.create_model("legacy_xception", pretrained=False, num_classes=2)
        head = lambda out: out  # noqa: E731
    else:
        net = torch_meso4(2, x.shape[1])
        head = lambda out: out[1]  # noqa: E731
    net = net.to(memory_format=torch.channels_last)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).contiguous(
        memory_format=torch.channels_last
    )
    yt = torch.from_numpy(y).long()
    opt = torch.optim.Adam(net.parameters(), 1e-4)

    def fwd():
        with torch.no_grad():
            head(net(xt))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(head(net(xt)), yt)
        loss.backward()
        opt.step()

    net.eval()
    fwd()
    fwd_s = _best(fwd, repeats)
    net.train()
    step()
    step_s = _best(step, repeats)
    return {"fwd": x.shape[0] / fwd_s, "step": x.shape[0] / step_s}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="all", choices=["all", "xception", "mesonet"])
    ap.add_argument("--size", type=int, default=0, help="0 = native (Xception 299, Meso-4 256)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--depthwise", default="auto", choices=["auto", "native", "shifted"])
    args = ap.parse_args(argv)
    names = ["mesonet", "xception"] if args.model == "all" else [args.model]
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()})")
    for name in names:
        size = args.size or (299 if name == "xception" else 256)
        rng = np.random.default_rng(0)
        x = rng.uniform(size=(args.batch, size, size, 3)).astype(np.float32)
        y = (np.arange(args.batch) % 2).astype(np.int32)
        ours = bench_ours(name, x, y, args.depthwise, args.repeats)
        ref = bench_torch(name, x, y, args.repeats)
        print(
            f"{name} {size}px batch {args.batch}: XLA {ours['flops'] / 1e9:.2f} GFLOP/img, "
            f"compile fwd {ours['fwd_compile']:.1f}s step {ours['step_compile']:.1f}s"
        )
        for what in ("fwd", "step"):
            print(
                f"  {what:5s} ours {ours[what]:8.1f} img/s | torch {ref[what]:8.1f} img/s | "
                f"ratio {ours[what] / ref[what]:.2f}x"
            )


if __name__ == "__main__":
    main()
