"""Multi-host training, tested: two processes on localhost (``jax.distributed`` on the CPU backend,
gloo collectives, one device each) against one process with two devices.

Each process of the pair reads only its shard of the training split (``shard_index`` /
``shard_count`` of the data contract; the indices it loaded are recorded and checked), the pair is
"killed" mid-epoch (``_crash_after_step``: no save, like SIGKILL), a NEW pair resumes from the
Orbax checkpoint it left (model, optimiser, per-process grain iterator state), and the final
parameters equal those of the uninterrupted single-process run. The single-process reference
feeds device ``d`` the batch that process ``d`` of the pair reads (shard ``d`` of 2), so both
runs see the same global batches in the same device layout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import portpicker

from aird_jax.config import load_config

REPO = Path(__file__).resolve().parents[1]
# Per group of processes: a hang guard only. The whole test takes about a minute on 2 quiet
# cores, but 300 s once ran out on a loaded CI machine; pytest's timeout (900 s) still bounds it.
TIMEOUT_S = 600

CHILD = textwrap.dedent(
    """
    import json, signal, sys
    signal.alarm(900)  # never outlive the test, even if it is killed before its cleanup
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # multi-process CPU
    from aird_jax.parallel import maybe_initialize_distributed
    maybe_initialize_distributed()  # JAX_COORDINATOR_ADDRESS/JAX_NUM_PROCESSES/JAX_PROCESS_ID
    import grain
    import numpy as np
    from test_train import ToyData, smoke_config
    from aird_jax import train
    from aird_jax.checkpoint import load_run

    workdir, out, crash = sys.argv[1], sys.argv[2], int(sys.argv[3])

    NO_PREFETCH = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)  # exact records

    class ShardRecordingData(ToyData):
        '''ToyData that records the training indices it loads. With shard_count=1 (the
        single-process reference) a global batch is the concatenation of what shards 0 and 1
        of 2 would read: device d gets exactly the examples process d of the pair gets.'''

        loaded = []

        def _shard(self, cfg, seed, batch_size, index, count):
            x, y, _ = self.splits[cfg.train_split]

            def load(i):
                self.loaded.append(int(i))
                return {"image": x[i], "label": y[i]}

            return (
                grain.MapDataset.range(len(y))[index::count]
                .seed(seed).shuffle().repeat(None).map(load)
                .batch(batch_size, drop_remainder=True)
            )

        def train_loader(self, cfg, *, seed, batch_size, shard_index=0, shard_count=1):
            if shard_count > 1:
                ds = self._shard(cfg, seed, batch_size, shard_index, shard_count)
                return ds.to_iter_dataset(NO_PREFETCH)
            half = [self._shard(cfg, seed, batch_size // 2, k, 2) for k in (0, 1)]

            def both(i):
                a, b = half[0][i], half[1][i]
                return {k: np.concatenate([a[k], b[k]]) for k in a}

            return grain.MapDataset.range(10**9).map(both).to_iter_dataset(NO_PREFETCH)

    data = ShardRecordingData()
    cfg = smoke_config()
    # The frequency-stream detector (fast to compile) with SupCon: BatchNorm statistics, the
    # gradient pmean and the all-gathered loss all cross the process boundary; dropout stays on
    # (its key is folded with the global device index, the same in both layouts).
    crashed = False
    try:
        train.train_and_evaluate(cfg, workdir, data=data, _crash_after_step=crash or None)
    except KeyboardInterrupt:
        crashed = True
    rec = {
        "process": jax.process_index(),
        "processes": jax.process_count(),
        "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "loaded": data.loaded,
        "crashed": crashed,
    }
    if not crashed:
        leaves = jax.tree.leaves(load_run(workdir, "latest").variables)
        rec["step"] = load_run(workdir, "latest").step
        np.savez(f"{out}.{jax.process_index()}.npz", *[np.asarray(a) for a in leaves])
    with open(f"{out}.{jax.process_index()}.json", "w") as f:
        json.dump(rec, f)
    """
)


def _env(tmp: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("JAX_") and k not in ("XLA_FLAGS", "SLURM_NTASKS")
    }
    env["JAX_PLATFORMS"] = "cpu"
    # The resumed pair reuses the first pair's compiled programs (in the session's cache, see
    # tests/conftest.py, which other tests' runs of the same programs may have filled).
    env["JAX_COMPILATION_CACHE_DIR"] = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(
        tmp / "xla_cache"
    )
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO / "tests"), str(REPO), os.environ.get("PYTHONPATH")])
    )
    return env


def _launch(tmp: Path, workdir: Path, out: Path, crash: int, n_proc: int) -> list:
    """Start ``n_proc`` processes (a jax.distributed job when n_proc > 1; else one process
    with 2 CPU devices)."""
    procs, port = [], portpicker.pick_unused_port() if n_proc > 1 else None
    for pid in range(n_proc):
        env = _env(tmp)
        if n_proc > 1:
            env.update(
                JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                JAX_NUM_PROCESSES=str(n_proc),
                JAX_PROCESS_ID=str(pid),
            )
        else:
            env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
        log = open(tmp / f"{out.name}.{pid}.log", "w")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", CHILD, str(workdir), str(out), str(crash)],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        log.close()
    return procs


def _wait(tmp: Path, groups: dict[str, list]) -> None:
    """Wait for every process (bounded); on a timeout or failure kill all and show the logs."""
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for name, procs in groups.items():
            for pid, p in enumerate(procs):
                rc = p.wait(timeout=max(1.0, deadline - time.monotonic()))
                if rc != 0:
                    log = (tmp / f"{name}.{pid}.log").read_text()
                    raise AssertionError(f"{name} process {pid} exited {rc}:\n{log[-4000:]}")
    finally:
        for procs in groups.values():
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()


def _result(tmp: Path, name: str, pid: int) -> dict:
    return json.loads((tmp / f"{name}.{pid}.json").read_text())


def _params(tmp: Path, name: str, pid: int) -> list[np.ndarray]:
    with np.load(tmp / f"{name}.{pid}.npz") as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]


def test_multihost_two_processes_match_one_process_and_resume(tmp_path):
    # The reference (1 process x 2 devices) and the first pair (killed after step 5; its latest
    # checkpoint is step 4, mid-epoch 2 of 3-step epochs) run side by side.
    groups = {
        "ref": _launch(tmp_path, tmp_path / "ref_run", tmp_path / "ref", 0, 1),
        "pair1": _launch(tmp_path, tmp_path / "pair_run", tmp_path / "pair1", 5, 2),
    }
    _wait(tmp_path, groups)
    # A new pair resumes in the same workdir and finishes the 2 epochs.
    _wait(tmp_path, {"pair2": _launch(tmp_path, tmp_path / "pair_run", tmp_path / "pair2", 0, 2)})

    ref = _result(tmp_path, "ref", 0)
    assert (ref["processes"], ref["devices"], ref["local_devices"]) == (1, 2, 2)
    first = [_result(tmp_path, "pair1", k) for k in (0, 1)]
    second = [_result(tmp_path, "pair2", k) for k in (0, 1)]
    for k in (0, 1):
        assert (first[k]["process"], first[k]["processes"]) == (k, 2)
        assert (first[k]["devices"], first[k]["local_devices"]) == (2, 1)
        assert first[k]["crashed"] and not second[k]["crashed"]
        # Each process reads only its shard (even / odd indices of the 64 training examples).
        seen = first[k]["loaded"] + second[k]["loaded"]
        assert seen and all(i % 2 == k for i in seen), f"process {k} read another shard"
    # 4 examples per process and step: 5 steps before the kill, steps 5 and 6 after the resume
    # from step 4 (the resumed iterator continues where the checkpoint left it, not where the
    # prefetch had read to), each run also reading train.prefetch batches ahead.
    ahead = 4 * load_config("configs/late_supcon.py:smoke").train.prefetch
    assert [len(r["loaded"]) for r in first] == [20 + ahead, 20 + ahead]
    assert [len(r["loaded"]) for r in second] == [8 + ahead, 8 + ahead]
    for k in (0, 1):
        assert second[k]["loaded"][:4] == first[k]["loaded"][16:20]
    # The reference's device d read, step by step, what process d read (steps 1-4 of the first
    # pair, then 5-6 of the resumed one).
    per_proc = [first[k]["loaded"][:16] + second[k]["loaded"][:8] for k in (0, 1)]
    expected = [i for s in range(6) for k in (0, 1) for i in per_proc[k][4 * s : 4 * s + 4]]
    assert ref["loaded"][: len(expected)] == expected

    assert ref["step"] == second[0]["step"] == second[1]["step"] == 6
    a = _params(tmp_path, "ref", 0)
    for k in (0, 1):  # both processes restore the same (replicated) parameters
        b = _params(tmp_path, "pair2", k)
        assert len(a) == len(b) > 0
        for u, v in zip(a, b):
            np.testing.assert_allclose(v, u, rtol=0, atol=1e-6)
    # Validation of epoch 1 (by the pair before the kill) and epoch 2 (by the resumed pair)
    # gives the reference's metrics.
    ref_lines, pair_lines = (
        [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        for run in ("ref_run", "pair_run")
    )
    assert [r["epoch"] for r in pair_lines] == [1, 2]
    for r, p in zip(ref_lines, pair_lines):
        assert abs(r["frame_auc"] - p["frame_auc"]) < 1e-6
        assert abs(r["train_loss"] - p["train_loss"]) < 1e-5
