"""Train-step throughput (images/s) of the detector, next to a PyTorch reference in-process.

    python scripts/bench_train.py                         # B4 @ 224 and tiny @ 64, CPU
    python scripts/bench_train.py --only b4 --batch 32 --dtype bfloat16   # on a GPU

JAX side: the real training step (``train.make_train_step`` through shard_map on all local
devices: forward, SupCon + CE, backward, gradient pmean, Optax update). Reference: the same
architecture re-stated in PyTorch with timm's EfficientNet (random init, since only speed is
measured): RGB backbone + 3-conv frequency CNN on a fixed 8x8 block-DCT (as a stride-8 conv),
fusion 512, classifier and 128-d projection, CE + SupCon, Adam step. Compile time is reported
separately; throughput excludes it.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from aird_jax import host_memory, train
from aird_jax.config import load_config
from aird_jax.parallel import make_parallel

CASES = {
    "b4": {"backbone": "efficientnet_b4", "timm": "efficientnet_b4", "size": 224},
    "tiny": {"backbone": "efficientnet_tiny", "timm": None, "size": 64},
}


def bench_jax(case: dict, batch: int, steps: int, dtype: str) -> tuple[float, float]:
    cfg = load_config("configs/late_supcon.py")
    cfg.model.backbone, cfg.data.image_size = case["backbone"], case["size"]
    cfg.model.dtype = dtype
    cfg.model.pretrained = ""  # speed only: random init, no ported weights needed
    cfg.train.batch_size = batch
    n = jax.local_device_count()
    cfg.train.batch_size = max(n, batch // n * n)
    cfg.train.eval_batch_size = n
    par = make_parallel(cfg)
    model, hs, tx, _ = train.init_state(cfg, 100)
    step = par.compile_step(train.make_train_step(cfg, model, tx))
    st, key = par.put_state(hs), par.put_state(train.seed_key_data(0))
    rng = np.random.default_rng(0)
    s, b = case["size"], cfg.train.batch_size
    batch_np = {
        "image": rng.uniform(0, 1, (b, s, s, 3)).astype(np.float32),
        "label": (np.arange(b) % 2).astype(np.int32),
    }
    xb = par.put_batch(batch_np)
    t0 = time.perf_counter()
    st, m = step(st, xb, key)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        st, m = step(st, xb, key)
    jax.block_until_ready(m)
    return b * steps / (time.perf_counter() - t0), compile_s


def bench_torch(case: dict, batch: int, steps: int) -> float | None:
    if case["timm"] is None:
        return None
    import sys
    import types

    # torchvision's compiled-op registrations fail beside this CPU torch build
    # ("torchvision::nms does not exist"); timm's EfficientNet never uses them.
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    try:
        import timm
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    torch.manual_seed(0)

    class Ref(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rgb = timm.create_model(case["timm"], pretrained=False, num_classes=0)
            # 8x8 DCT-II basis as a stride-8 conv; zero the top-left 4x4 (high-pass).
            k = np.arange(8)
            c = np.sqrt(2 / 8) * np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / 16)
            c[0] /= np.sqrt(2)
            basis = np.einsum("ux,vy->uvxy", c, c).reshape(64, 1, 8, 8)
            keep = np.ones((8, 8))
            keep[:4, :4] = 0
            self.register_buffer(
                "dct", torch.tensor(basis[keep.reshape(-1) > 0], dtype=torch.float32)
            )
            chans, layers = [48, 64, 128, 256], []
            for a, o in zip(chans[:-1], chans[1:]):
                layers += [torch.nn.Conv2d(a, o, 3, 2, 1), torch.nn.BatchNorm2d(o), torch.nn.ReLU()]
            self.freq = torch.nn.Sequential(*layers)
            self.freq_fc = torch.nn.Linear(256, 256)
            self.fusion = torch.nn.Sequential(
                torch.nn.Linear(self.rgb.num_features + 256, 512),
                torch.nn.BatchNorm1d(512),
                torch.nn.ReLU(),
                torch.nn.Dropout(0.3),
            )
            self.cls = torch.nn.Linear(512, 2)
            self.proj = torch.nn.Sequential(
                torch.nn.Linear(512, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128)
            )

        def forward(self, x):
            gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
            f = self.freq(F.conv2d(gray, self.dct, stride=8)).mean((2, 3))
            h = self.fusion(torch.cat([self.rgb(x), self.freq_fc(f)], 1))
            return self.cls(h), F.normalize(self.proj(h), dim=1)

    model = Ref()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5)
    s = case["size"]
    x = torch.rand(batch, 3, s, s)
    y = torch.arange(batch) % 2

    def step():
        logits, z = model(x)
        sim = z @ z.T / 0.07
        eye = torch.eye(batch, dtype=torch.bool)
        sim = sim.masked_fill(eye, -1e9)
        logp = sim - torch.logsumexp(sim, 1, keepdim=True)
        pos = (y[:, None] == y[None, :]) & ~eye
        con = -(logp * pos).sum(1) / pos.sum(1).clamp(min=1)
        loss = F.cross_entropy(logits, y) + 0.5 * con.mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", choices=sorted(CASES), nargs="*", default=["tiny", "b4"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--no-torch", action="store_true")
    a = p.parse_args()
    # As every CLI run, before JAX's backend starts (aird_jax/host_memory.py);
    # AIRD_ALLOCATOR=system measures without it.
    allocator = host_memory.configure()
    dev = jax.devices()[0]
    print(
        f"devices: {jax.local_device_count()} x {dev.platform} ({dev.device_kind}); "
        f"allocator {allocator}; "
        f"batch {a.batch}; {a.steps} timed steps; dtype {a.dtype}"
    )
    print(
        f"{'case':<6}{'size':>6}{'jax img/s':>12}{'compile s':>11}{'torch img/s':>13}{'ratio':>8}"
    )
    for name in a.only:
        case = CASES[name]
        ours, comp = bench_jax(case, a.batch, a.steps, a.dtype)
        ref = None if a.no_torch or dev.platform != "cpu" else bench_torch(case, a.batch, a.steps)
        ref_s = f"{ref:13.2f}" if ref else f"{'-':>13}"
        ratio = f"{ours / ref:8.2f}" if ref else f"{'-':>8}"
        print(f"{name:<6}{case['size']:>6}{ours:12.2f}{comp:11.1f}{ref_s}{ratio}", flush=True)


if __name__ == "__main__":
    host_memory.relaunch_under_allocator()  # under tcmalloc where chosen (host_memory.py)
    main()
