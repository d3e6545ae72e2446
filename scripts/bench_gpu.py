"""One-command GPU benchmark (a few minutes on one GPU): prints a table, then one JSON line.

    python scripts/bench_gpu.py            # on a CUDA machine (pip install -U "jax[cuda12]")

Rows, JAX side (compile time reported separately; throughput excludes it):
* B4 forward (eval mode, RGB backbone), images/s: batch 64 and 256, float32 and bfloat16
  (``model.dtype``; parameters stay float32);
* detector train step (B4 late fusion + frequency stream, CE + SupCon, Adam, cross-replica BN,
  donated state: ``train.make_train_step`` through ``parallel.make_parallel(cfg).compile_step``),
  bfloat16, batch 32 and 128;
* batch-1 B4 forward latency, p50/p99 in ms, float32 and bfloat16;
* end-to-end training, images/s: the real training loop (``train.Trainer``: the grain loader
  reading the decoded-frame cache with the paper's augmentations in ``--workers`` processes,
  host-to-device prefetch, the bfloat16 step above) over PNG faces written at the benchmark's size
  (``aird_jax.data.bench_faces``), timed over a second epoch after a compiling one.

Reference in the same process when a CUDA PyTorch and timm are importable: timm
``efficientnet_b4``, channels_last, autocast (bfloat16 rows) or float32; the train row is timm B4 +
a linear head with cross-entropy and Adam (no frequency stream or SupCon: it does less work than the
JAX row). ``ratio`` = JAX / PyTorch throughput (or PyTorch / JAX latency): above 1, JAX is faster.

Without a GPU it prints ``no GPU: ...`` and exits 0 (``--allow-cpu`` runs the same code on CPU,
e.g. with ``--backbone efficientnet_tiny --size 32`` to check the script itself).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import jax
import numpy as np

from aird_jax.experiments.speed import (
    jax_end_to_end,
    jax_forward,
    jax_train,
    throughput,
    timings,
)


# -------------------------------------------------------------------------------- PyTorch
def torch_or_none(allow_cpu: bool):
    """(torch, timm, device) when a CUDA PyTorch (or, with ``allow_cpu``, any PyTorch) and timm
    are importable, else None."""
    try:
        import torch

        from aird_jax.models.torch_reference import import_timm

        if not (torch.cuda.is_available() or allow_cpu):
            return None
        return torch, import_timm(), "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # noqa: BLE001 - any import failure means: no reference
        return None


def torch_forward(ref, a, batch: int, dtype: str):
    torch, timm, dev = ref
    model = timm.create_model("efficientnet_b4", pretrained=False, num_classes=0)
    model = model.to(dev).eval().to(memory_format=torch.channels_last)
    x = torch.rand(batch, 3, a.size, a.size, device=dev)
    x = x.contiguous(memory_format=torch.channels_last)
    amp = dtype == "bfloat16"

    @torch.inference_mode()
    def run():
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=amp):
            return model(x)

    return run


def torch_train(ref, a, batch: int):
    torch, timm, dev = ref
    body = timm.create_model("efficientnet_b4", pretrained=False, num_classes=0)
    model = torch.nn.Sequential(body, torch.nn.Linear(body.num_features, 2))
    model = model.to(dev).train().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, a.size, a.size, device=dev)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.arange(batch, device=dev) % 2

    def run():
        with torch.autocast(dev, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return run


def add(out: list[dict], r: dict) -> None:
    """Keep a row and print it at once (the table comes at the end: a run stopped early still
    leaves every row it measured)."""
    out.append(r)
    print(f"row {time.strftime('%H:%M:%S')} {json.dumps(r)}", file=sys.stderr, flush=True)


def release(ref) -> None:
    """Hand PyTorch's cached GPU memory back before the next JAX row."""
    if ref[2] == "cuda":
        ref[0].cuda.empty_cache()


# ----------------------------------------------------------------------------------- main
def forward_rows(a, ref, sync) -> list[dict]:
    out = []
    for dtype in ("float32", "bfloat16"):
        for b in a.fwd_batch:
            ips, comp = throughput(
                jax_forward(a.backbone, a.size, b, dtype), b, a.iters, sync["jax"]
            )
            r = {"row": "b4_forward", "batch": b, "dtype": dtype, "jax_img_s": ips}
            r["compile_s"] = comp
            if ref:
                tf = torch_forward(ref, a, b, dtype)
                r["torch_img_s"], _ = throughput(tf, b, a.iters, sync["torch"])
                release(ref)
            add(out, r)
    return out


def train_rows(a, ref, sync) -> list[dict]:
    out = []
    for b in a.train_batch:
        ips, comp = throughput(
            jax_train(a.backbone, a.size, b, a.e2e_steps), b, a.iters, sync["jax"]
        )
        r = {"row": "train_step", "batch": b, "dtype": "bfloat16", "jax_img_s": ips}
        r["compile_s"] = comp
        if ref:
            r["torch_img_s"], _ = throughput(torch_train(ref, a, b), b, a.iters, sync["torch"])
            release(ref)
        add(out, r)
    return out


def latency_rows(a, ref, sync) -> list[dict]:
    out = []
    for dtype in ("float32", "bfloat16"):
        comp, per = timings(jax_forward(a.backbone, a.size, 1, dtype), a.latency_iters, sync["jax"])
        r = {"row": "latency_b1", "batch": 1, "dtype": dtype, "compile_s": comp}
        r["jax_p50_ms"], r["jax_p99_ms"] = np.percentile(per * 1e3, [50, 99]).tolist()
        if ref:
            _, tper = timings(torch_forward(ref, a, 1, dtype), a.latency_iters, sync["torch"])
            r["torch_p50_ms"], r["torch_p99_ms"] = np.percentile(tper * 1e3, [50, 99]).tolist()
        add(out, r)
    return out


def end_to_end_rows(a, ref, sync) -> list[dict]:
    out = []
    for b in a.e2e_batch:
        add(
            out,
            {
                "row": "end_to_end",
                "batch": b,
                "dtype": "bfloat16",
                **jax_end_to_end(a.backbone, a.size, b, a.e2e_steps, a.e2e_images, a.workers),
            },
        )
    return out


ROWS = {
    "forward": forward_rows,
    "train": train_rows,
    "latency": latency_rows,
    "end_to_end": end_to_end_rows,
}


def rows(a, ref) -> list[dict]:
    """The measurements of the ``--only`` groups, as dicts (table rows and the JSON line)."""
    cuda = ref is not None and ref[2] == "cuda"
    sync = {
        "jax": jax.block_until_ready,
        "torch": (lambda _: ref[0].cuda.synchronize()) if cuda else (lambda _: None),
    }
    out = [r for group in a.only for r in ROWS[group](a, ref, sync)]
    for r in out:
        if "torch_img_s" in r:
            r["ratio"] = r["jax_img_s"] / r["torch_img_s"]
        elif "torch_p50_ms" in r:
            r["ratio"] = r["torch_p50_ms"] / r["jax_p50_ms"]
    return out


def print_table(out: list[dict]) -> None:
    def f(v, w, p=1):
        return f"{v:{w}.{p}f}" if isinstance(v, float) else f"{'-':>{w}}"

    head = f"{'row':<12}{'batch':>6}{'dtype':>10}{'jax':>14}{'torch':>16}{'ratio':>8}"
    print(f"{head}{'compile s':>11}")
    for r in out:
        if r["row"] == "latency_b1":
            jax_s = f"{r['jax_p50_ms']:.2f}/{r['jax_p99_ms']:.2f}"
            t = f"{r['torch_p50_ms']:.2f}/{r['torch_p99_ms']:.2f}" if "torch_p50_ms" in r else "-"
            j, t = f"{jax_s:>14}", f"{t:>16}"
        else:
            j, t = f(r["jax_img_s"], 14), f(r.get("torch_img_s"), 16)
        print(
            f"{r['row']:<12}{r['batch']:>6}{r['dtype']:>10}{j}{t}{f(r.get('ratio'), 8, 2)}"
            f"{f(r['compile_s'], 11)}"
        )
    print(
        "(img/s for forward, train and end-to-end rows; p50/p99 ms for latency_b1; ratio > 1: "
        "JAX faster; end_to_end's 'compile s': data build + compile, from the cache on a GPU)"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--only", nargs="+", choices=list(ROWS), default=list(ROWS), help="row groups to measure"
    )
    p.add_argument("--fwd-batch", type=int, nargs="+", default=[64, 256])
    p.add_argument("--train-batch", type=int, nargs="+", default=[32, 128])
    p.add_argument("--iters", type=int, default=20, help="timed calls per throughput row")
    p.add_argument("--latency-iters", type=int, default=200)
    p.add_argument("--e2e-batch", type=int, nargs="*", default=[128])
    p.add_argument("--e2e-steps", type=int, default=40, help="timed steps of the end-to-end row")
    p.add_argument("--e2e-images", type=int, default=1024, help="faces the end-to-end row reads")
    p.add_argument(
        "--workers",
        type=int,
        default=min(8, max(1, (os.cpu_count() or 2) // 2)),
        help="input worker processes of the end-to-end row",
    )
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--backbone", default="efficientnet_b4")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--allow-cpu", action="store_true", help="run on CPU (to check the script)")
    a = p.parse_args(argv)
    # JAX and PyTorch share the GPU: no 75 % preallocation by JAX (read when the backend starts).
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if not gpus and not a.allow_cpu:
        plat = jax.devices()[0].platform
        print(
            f"no GPU: JAX sees only {jax.device_count()} {plat} device(s); run this on a CUDA "
            'machine with a CUDA jaxlib (pip install -U "jax[cuda12]"). Nothing measured.'
        )
        return 0
    dev = jax.devices()[0]
    ref = None if a.no_torch else torch_or_none(a.allow_cpu)
    print(
        f"device: {jax.local_device_count()} x {dev.device_kind} ({dev.platform}); jax "
        f"{jax.__version__}; {a.backbone} @ {a.size}px; PyTorch reference: "
        f"{f'torch {ref[0].__version__} ({ref[2]})' if ref else 'none'}",
        flush=True,
    )
    # The end-to-end row compiles the train step row's step again (same HLO): serve it from a
    # persistent compilation cache of this run instead of paying minutes of GPU autotuning.
    jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="bench_gpu_jit_"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    out = rows(a, ref)
    print_table(out)
    info = {"device": dev.device_kind, "jax": jax.__version__, "size": a.size}
    print(json.dumps({"bench": "gpu", **info, "rows": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
