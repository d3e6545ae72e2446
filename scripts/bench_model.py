"""CPU benchmark: our Flax B4 / detector vs timm efficientnet_b4 in PyTorch, side by side.

  python scripts/bench_model.py [--batch 8] [--size 224] [--steps 5] [--depthwise auto] [--json]

Measures, in one process and interleaving the two frameworks round by round (so that machine
load hits both alike):
* B4 forward (eval mode), images/s;
* full detector train step (late fusion, CE + 0.5 SupCon, Adam, BN updates), images/s;
against PyTorch eager, channels_last, timm ``efficientnet_b4`` with the same frequency stream and
heads. Also prints XLA's FLOP count per image (``cost_analysis``) and the compile times.

timm is imported through ``aird_jax.models.torch_reference.import_timm`` (torchvision shim).
The model section is the config file's (configs/late_supcon.py), with ``--depthwise``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aird_jax import host_memory
from aird_jax.config import load_config
from aird_jax.losses import total_loss
from aird_jax.models import build_model
from aird_jax.models.efficientnet import EfficientNet
from aird_jax.models.torch_reference import import_timm


def flax_setup(args):
    cfg = load_config("configs/late_supcon.py").model  # B4, late fusion
    cfg.depthwise = args.depthwise
    model = build_model(cfg)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(args.batch, args.size, args.size, 3)), jnp.float32)
    y = jnp.asarray(np.arange(args.batch) % 2, jnp.int32)
    t = time.perf_counter()
    if args.real_init:
        variables = jax.jit(model.init)({"params": jax.random.key(0)}, x)
    else:  # same shapes, numpy draws: skips the (slow, threefry-bound) init compile
        shapes = jax.eval_shape(model.init, {"params": jax.random.key(0)}, x)
        variables = jax.tree.map(
            lambda s: jnp.asarray(rng.normal(0, 0.05, s.shape), s.dtype), shapes
        )
        variables["batch_stats"] = jax.tree.map(jnp.abs, variables["batch_stats"])
    jax.block_until_ready(variables)
    t_init = time.perf_counter() - t
    tx = optax.adam(1e-4)
    opt_state = tx.init(variables["params"])

    def train_step(params, batch_stats, opt_state, x, y, key):
        def loss_fn(p):
            out, upd = model.apply(
                {"params": p, "batch_stats": batch_stats},
                x,
                train=True,
                rngs={"dropout": key},
                mutable=["batch_stats"],
            )
            loss, _ = total_loss(out["logits"], out["embedding"], y)
            return loss, upd["batch_stats"]

        (loss, new_bs), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_bs, opt_state, loss

    # The forward benchmark is the EfficientNet alone (the task's "B4 forward").
    b4 = EfficientNet("efficientnet_b4", depthwise=args.depthwise)
    # copies: the train step donates (and so deletes) the detector's buffers
    b4_vars = {
        c: jax.tree.map(jnp.copy, variables[c]["rgb_backbone"]) for c in ("params", "batch_stats")
    }
    fwd = jax.jit(lambda v, x: b4.apply(v, x, train=False))
    step = jax.jit(train_step, donate_argnums=(0, 1, 2))

    out = {"init_s" + ("" if args.real_init else "_numpy"): t_init}
    t = time.perf_counter()
    fwd_c = fwd.lower(b4_vars, x).compile()
    out["fwd_compile_s"] = time.perf_counter() - t
    out["fwd_flops_per_image"] = _flops(fwd_c) / args.batch
    key = jax.random.key(1)
    t = time.perf_counter()
    step_c = step.lower(
        variables["params"], variables["batch_stats"], opt_state, x, y, key
    ).compile()
    out["step_compile_s"] = time.perf_counter() - t
    out["step_flops_per_image"] = _flops(step_c) / args.batch
    state = [variables["params"], variables["batch_stats"], opt_state]

    def run_fwd():
        jax.block_until_ready(fwd_c(b4_vars, x))

    def run_step():
        state[0], state[1], state[2], loss = step_c(*state, x, y, key)
        jax.block_until_ready(loss)
        return float(loss)

    return out, run_fwd, run_step


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0]
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def torch_setup(args):
    timm = import_timm()
    import torch
    from torch import nn

    torch.manual_seed(0)

    class FreqStream(nn.Module):
        def __init__(self):
            super().__init__()
            layers, c_in = [], 1
            for c in (64, 128, 256):
                layers += [nn.Conv2d(c_in, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
                c_in = c
            self.body = nn.Sequential(*layers)
            self.drop = nn.Dropout(0.3)
            self.fc = nn.Linear(256, 256)

        def forward(self, x):
            return self.fc(self.drop(self.body(x).mean((2, 3))))

    # Same high-pass block DCT as ours (orthonormal 8x8 DCT-II, 4x4 low corner zeroed).
    n = np.arange(8)
    d = np.sqrt(2 / 8) * np.cos((2 * n[None, :] + 1) * n[:, None] * np.pi / 16)
    d[0] /= np.sqrt(2)
    dct = torch.tensor(d, dtype=torch.float32)
    mask = torch.ones(8, 8)
    mask[:4, :4] = 0

    def highpass(x):  # x [B,3,H,W] in [0,1]
        g = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
        b, h, w = g.shape
        t = g.reshape(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)
        c = dct @ t @ dct.T * mask
        return c.permute(0, 1, 3, 2, 4).reshape(b, 1, h, w)

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.rgb = timm.create_model("efficientnet_b4", pretrained=False, num_classes=0)
            self.freq = FreqStream()
            self.fusion = nn.Sequential(
                nn.Linear(2048, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Dropout(0.3)
            )
            self.cls = nn.Linear(512, 2)
            self.proj = nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 128))
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

        def forward(self, x):
            f = torch.cat([self.rgb((x - self.mean) / self.std), self.freq(highpass(x))], 1)
            f = self.fusion(f)
            return self.cls(f), nn.functional.normalize(self.proj(f), dim=1)

    def supcon(z, y, t=0.07):
        logits = z @ z.T / t
        eye = torch.eye(len(y), dtype=torch.bool)
        logits = logits.masked_fill(eye, -1e9)
        logp = logits - torch.logsumexp(logits, 1, keepdim=True)
        pos = (y[:, None] == y[None, :]) & ~eye
        return (-(logp * pos).sum(1) / pos.sum(1).clamp(min=1)).mean()

    model = Detector().to(memory_format=torch.channels_last)
    b4 = timm.create_model("efficientnet_b4", pretrained=False, num_classes=0)
    b4 = b4.to(memory_format=torch.channels_last).eval()
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.uniform(size=(args.batch, 3, args.size, args.size)), dtype=torch.float32)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.tensor(np.arange(args.batch) % 2)

    def run_fwd():
        with torch.inference_mode():
            b4(x)

    def run_step():
        model.train()
        logits, z = model(x)
        loss = nn.functional.cross_entropy(logits, y) + 0.5 * supcon(z, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return {"torch_threads": torch.get_num_threads()}, run_fwd, run_step


def timeit(fn, steps: int) -> float:
    # One untimed call first: the first call after the other framework's round pays for memory
    # that framework's allocator took over (measured: JAX's train step 5.5 s, then 1.8-2.1 s;
    # PyTorch's 1.55 s, then 1.4 s), a cost of interleaving that a training run never sees.
    fn()
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t) / steps


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=5, help="timed iterations per round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating JAX/PyTorch rounds")
    ap.add_argument("--depthwise", default="auto", choices=("auto", "native", "shifted"))
    ap.add_argument("--real-init", action="store_true", help="jit model.init (slow compile)")
    ap.add_argument("--json", action="store_true", help="end with one JSON line (the ratios)")
    args = ap.parse_args(argv)
    # As every CLI run (aird_jax.cli.run), before JAX's backend starts: freed blocks are reused
    # instead of XLA's per-call temporaries being mapped afresh (tcmalloc when the __main__ block
    # relaunched under it, else glibc settings; AIRD_ALLOCATOR=system measures without either).
    # Process-wide: PyTorch's side runs under the same allocator.
    allocator = host_memory.configure()
    print(
        f"jax {jax.__version__} backend={jax.default_backend()} devices={jax.devices()} "
        f"allocator={allocator}"
    )
    info, j_fwd, j_step = flax_setup(args)
    tinfo, t_fwd, t_step = torch_setup(args)
    info.update(tinfo)
    for k, v in info.items():
        print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
    for fn in (j_fwd, j_step, t_fwd, t_step):  # warm-up (also the first PyTorch allocations)
        fn()
    res = {k: [] for k in ("jax_fwd", "torch_fwd", "jax_step", "torch_step")}
    for _ in range(args.rounds):
        res["jax_fwd"].append(timeit(j_fwd, args.steps))
        res["torch_fwd"].append(timeit(t_fwd, args.steps))
        res["jax_step"].append(timeit(j_step, args.steps))
        res["torch_step"].append(timeit(t_step, args.steps))
    best = {k: min(v) for k, v in res.items()}  # least disturbed round
    ips = {k: args.batch / v for k, v in best.items()}
    print(
        f"\nbatch {args.batch}, {args.size}px, best of {args.rounds} rounds x {args.steps} steps "
        "(each round after one untimed call)"
    )
    print(f"{'':24s}{'flax/jax':>12s}{'pytorch':>12s}{'jax/torch':>12s}")
    for what, j, t in (
        ("B4 forward (img/s)", "jax_fwd", "torch_fwd"),
        ("train step (img/s)", "jax_step", "torch_step"),
    ):
        print(f"{what:24s}{ips[j]:12.2f}{ips[t]:12.2f}{ips[j] / ips[t]:12.2f}")
    print(
        f"XLA GFLOPs/image: B4 forward {info['fwd_flops_per_image'] / 1e9:.2f}, "
        f"train step {info['step_flops_per_image'] / 1e9:.2f}"
    )
    print(
        f"compile s: B4 forward {info['fwd_compile_s']:.1f}, "
        f"train step {info['step_compile_s']:.1f}"
    )
    if hasattr(os, "getloadavg"):  # other processes distort both sides; say how busy we were
        print(f"load average (1/5/15 min): {os.getloadavg()}, cores: {os.cpu_count()}")
    if args.json:
        ratios = {
            "forward_ratio": ips["jax_fwd"] / ips["torch_fwd"],
            "train_step_ratio": ips["jax_step"] / ips["torch_step"],
        }
        out = {**ratios, **ips, **info, "batch": args.batch, "size": args.size}
        # what XLA ran with (no flag is set by the package: none measured faster) and how busy
        # the machine was, so that two JSON lines can be compared
        out["xla_flags"] = os.environ.get("XLA_FLAGS", "")
        out["depthwise"] = args.depthwise
        out["allocator"] = allocator
        if hasattr(os, "getloadavg"):
            out["load_avg_1min"] = os.getloadavg()[0]
        finite = {  # strict JSON
            k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in out.items()
        }
        print(json.dumps(finite))
    return {**info, **ips}


if __name__ == "__main__":
    host_memory.relaunch_under_allocator()  # under tcmalloc where chosen (host_memory.py)
    main()
