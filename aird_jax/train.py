"""Training and validation loop: one readable file (cf. flax examples/imagenet).

The train step is written once, per device, with ``axis_name="data"`` collectives (gradient
``pmean``, cross-replica BatchNorm, SupCon over the all-gathered global batch), so the result does
not depend on how many devices share the batch. It runs through ``jax.shard_map`` under ``jit`` on
a 1-D ``data`` mesh (default) or through ``jax.pmap`` (``config.parallel="pmap"``).

Each epoch trains, then scores the validation split (frame AUC and video AUC, the threshold chosen
on validation by Youden's J) and writes ``metrics.jsonl``, TensorBoard events and checkpoints:
``checkpoints/latest`` (every epoch and every ``train.checkpoint_every_steps``; model, optimiser,
data-iterator state and loop bookkeeping) and ``checkpoints/best`` (best validation frame AUC;
checkpoint selection never looks at a test set). Rerunning the same command resumes from the latest
checkpoint and ends with bitwise the same parameters as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from aird_jax import config as cfg
from aird_jax import losses, metrics, optim

AXIS = "data"


# ----------------------------------------------------------------------------------- devices
@dataclasses.dataclass
class Parallel:
    """How the per-device step is mapped onto devices, and how arrays get there."""

    mode: str
    devices: list
    mesh: jax.sharding.Mesh  # global "data" mesh (shard_map) / also used for pmap bookkeeping
    local_mesh: jax.sharding.Mesh  # this host's devices: validation and prediction

    @property
    def n(self) -> int:
        return len(self.devices)

    def _n_local(self) -> int:
        return len([d for d in self.devices if d.process_index == jax.process_index()])

    def put_state(self, host_tree: Any) -> Any:
        """Replicate a host pytree on every training device."""
        if self.mode == "pmap":
            # pmap takes host arrays with a leading device axis; its outputs stay on device.
            n = self._n_local()
            return jax.tree.map(lambda x: np.stack([np.asarray(x)] * n), host_tree)
        sharding = NamedSharding(self.mesh, P())
        return jax.tree.map(
            lambda x: jax.make_array_from_callback(
                np.shape(x), sharding, lambda i: np.asarray(x)[i]
            ),
            host_tree,
        )

    def get_state(self, dev_tree: Any) -> Any:
        """Host numpy copy of replicated state (identical on every device by construction)."""
        if self.mode == "pmap":
            return jax.tree.map(lambda x: np.asarray(x)[0], dev_tree)
        return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), dev_tree)

    def put_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        if self.mode == "pmap":
            n = self._n_local()
            return {k: v.reshape((n, -1) + v.shape[1:]) for k, v in batch.items()}
        sharding = NamedSharding(self.mesh, P(AXIS))
        return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def make_parallel(config: ml_collections.ConfigDict) -> Parallel:
    """Devices for training; a clear error when the global batch cannot be split evenly."""
    devices = jax.devices()
    if config.num_devices:
        if jax.process_count() > 1:
            raise ValueError("num_devices only applies to single-host runs; leave it at 0")
        if config.num_devices > len(devices):
            raise ValueError(
                f"num_devices={config.num_devices} but only {len(devices)} devices are visible"
            )
        devices = devices[: config.num_devices]
    n = len(devices)
    if config.train.batch_size % n:
        raise ValueError(
            f"train.batch_size={config.train.batch_size} is not divisible by the {n} devices "
            f"({devices[0].platform}); use a multiple of {n}, e.g. "
            f"--config.train.batch_size={max(n, config.train.batch_size // n * n)}, or restrict "
            "devices with --config.num_devices"
        )
    local = [d for d in devices if d.process_index == jax.process_index()]
    if config.train.eval_batch_size % len(local):
        raise ValueError(
            f"train.eval_batch_size={config.train.eval_batch_size} is not divisible by the "
            f"{len(local)} local devices; use a multiple of {len(local)}"
        )
    mesh = jax.make_mesh((n,), (AXIS,), axis_types=(AxisType.Auto,), devices=devices)
    local_mesh = jax.make_mesh((len(local),), (AXIS,), axis_types=(AxisType.Auto,), devices=local)
    return Parallel(config.parallel, devices, mesh, local_mesh)


def maybe_initialize_distributed() -> None:
    """``jax.distributed.initialize()`` when the environment describes a multi-process job.

    Recognised: an explicit coordinator (``JAX_COORDINATOR_ADDRESS`` + ``JAX_NUM_PROCESSES`` +
    ``JAX_PROCESS_ID``), SLURM with more than one task, Open MPI with more than one rank, and
    multi-host Cloud TPU slices; otherwise a single-process run.
    """
    env = os.environ
    multi = (
        "JAX_COORDINATOR_ADDRESS" in env
        or int(env.get("SLURM_NTASKS", "1")) > 1
        or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
        or "," in env.get("TPU_WORKER_HOSTNAMES", "")
    )
    if multi:
        kwargs = {}
        if "JAX_COORDINATOR_ADDRESS" in env:
            kwargs = dict(
                coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
                num_processes=int(env["JAX_NUM_PROCESSES"]),
                process_id=int(env["JAX_PROCESS_ID"]),
            )
        jax.distributed.initialize(**kwargs)


# ------------------------------------------------------------------------------- train state
def init_state(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> tuple[Any, Any, optax.GradientTransformation, dict]:
    """(train-mode model with axis_name, host state, optimiser, schedules)."""
    from aird_jax.models import build_model, is_backbone_path, load_pretrained

    model = build_model(config.model, axis_name=AXIS)
    eval_model = build_model(config.model, axis_name=None)
    key = jax.random.key(config.seed)
    k_params, k_drop = jax.random.split(jax.random.fold_in(key, 0))
    s = config.data.image_size
    x = jnp.zeros((1, s, s, 3), jnp.float32)
    variables = jax.jit(partial(eval_model.init, train=False))(
        {"params": k_params, "dropout": k_drop}, x
    )
    variables = load_pretrained(dict(variables), config.model)
    tx, schedules = optim.make_optimizer(
        config.optim, steps_per_epoch, variables["params"], is_backbone_path
    )
    state = {
        "step": np.zeros((), np.int32),
        "params": variables["params"],
        "batch_stats": variables.get("batch_stats", {}),
        "opt_state": tx.init(variables["params"]),
    }
    return model, jax.device_get(state), tx, schedules


def make_train_step(
    config: ml_collections.ConfigDict, model: Any, tx: optax.GradientTransformation
) -> Callable:
    """The per-device step: (state, batch) -> (state, metrics). Pure; collectives on AXIS."""
    lam, temp = float(config.loss.lam), float(config.loss.temperature)

    def step_fn(state, batch, seed_key):
        # Dropout key from (seed, step, device index): reproducible, different per device. The
        # seed's key is an argument (not a constant) so runs that differ only in seed share one
        # compiled program.
        base_key = jax.random.wrap_key_data(seed_key)
        key = jax.random.fold_in(
            jax.random.fold_in(base_key, state["step"]), jax.lax.axis_index(AXIS)
        )
        images, labels = batch["image"], batch["label"]

        def loss_fn(params):
            out, upd = model.apply(
                {"params": params, "batch_stats": state["batch_stats"]},
                images,
                train=True,
                rngs={"dropout": key},
                mutable=["batch_stats"],
            )
            ce = losses.classification_loss(out["logits"], labels)
            if lam > 0:
                # SupCon over the global batch, so the objective is the same for any number of
                # devices. all_gather's transpose sums the cotangents of every device's (equal)
                # loss, which the gradient pmean below divides back out.
                z = jax.lax.all_gather(out["embedding"], AXIS, tiled=True)
                y = jax.lax.all_gather(labels, AXIS, tiled=True)
                con = losses.supcon_loss(z, y, temp)
            else:
                con = jnp.zeros((), jnp.float32)
            acc = jnp.mean((jnp.argmax(out["logits"], -1) == labels).astype(jnp.float32))
            return ce + lam * con, (upd.get("batch_stats", {}), ce, con, acc)

        # Differentiate w.r.t. a per-device ("varying") copy of the replicated params. Without
        # the cast, shard_map's autodiff already psums the gradient of a replicated input over
        # devices, and the pmean below would leave n_devices x the mean gradient (which then
        # changes gradient clipping and the coupled weight decay with the device count). The
        # cast also gives custom-VJP layers (the shifted depthwise conv) cotangents of the type
        # shard_map expects.
        local_params = jax.lax.pcast(state["params"], AXIS, to="varying")
        grads, (new_bs, ce, con, acc) = jax.grad(loss_fn, has_aux=True)(local_params)
        grads = jax.lax.pmean(grads, AXIS)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        # Every device already holds the same global SupCon value; pmean makes that explicit.
        ce, con = jax.lax.pmean(ce, AXIS), jax.lax.pmean(con, AXIS)
        out = {
            "loss": ce + lam * con,
            "ce": ce,
            "supcon": con,
            "acc": jax.lax.pmean(acc, AXIS),
            "grad_norm": optax.tree.norm(grads),
        }
        new_state = {
            "step": state["step"] + 1,
            "params": params,
            "batch_stats": new_bs,
            "opt_state": opt_state,
        }
        return new_state, out

    return step_fn


def seed_key_data(seed: int) -> np.ndarray:
    """Raw key data of the dropout stream for ``seed`` (an argument of the train step)."""
    return np.asarray(jax.random.key_data(jax.random.fold_in(jax.random.key(seed), 1)))


def compile_train_step(step_fn: Callable, par: Parallel) -> Callable:
    if par.mode == "pmap":
        # Multi-host pmap takes every participating device; each host feeds its local ones.
        return jax.pmap(step_fn, axis_name=AXIS, devices=par.devices, donate_argnums=0)
    mapped = jax.shard_map(
        step_fn, mesh=par.mesh, in_specs=(P(), P(AXIS), P()), out_specs=(P(), P())
    )
    return jax.jit(mapped, donate_argnums=0)


def _fetch_metrics(m: Any, par: Parallel) -> dict[str, float]:
    m = jax.device_get(m)
    if par.mode == "pmap":
        m = jax.tree.map(lambda x: x[0], m)
    return {k: float(v) for k, v in m.items()}


# -------------------------------------------------------------------------------- prediction
def _forward(model: Any, variables: Any, images: jax.Array) -> jax.Array:
    out = model.apply(variables, images, train=False)
    return jax.nn.softmax(out["logits"].astype(jnp.float32), axis=-1)[:, 1]


_JIT_FORWARD: dict[int, tuple[Any, Callable]] = {}


def _jitted_forward(model: Any) -> Callable:
    entry = _JIT_FORWARD.get(id(model))
    if entry is None or entry[0] is not model:
        entry = (model, jax.jit(partial(_forward, model)))
        _JIT_FORWARD[id(model)] = entry
    return entry[1]


def predict_scores(
    model: Any, variables: Any, images: np.ndarray, batch_size: int = 64
) -> np.ndarray:
    """P(fake) for ``images`` (float32 [N,H,W,3] raw RGB in [0,1]); jitted, batched, padded.

    Batches are padded to a fixed size so that any N compiles at most two shapes.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [N, H, W, 3] RGB, got shape {images.shape}")
    fwd = _jitted_forward(model)
    n = images.shape[0]
    bs = min(batch_size, max(n, 1))
    out = []
    for i in range(0, n, bs):
        chunk = images[i : i + bs]
        k = chunk.shape[0]
        if k < bs:
            chunk = np.concatenate([chunk, np.zeros((bs - k,) + chunk.shape[1:], np.float32)])
        out.append(np.asarray(fwd(variables, chunk))[:k])
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def evaluate_split(
    model: Any, variables: Any, batches: Iterable[dict], mesh: jax.sharding.Mesh | None = None
) -> dict[str, np.ndarray]:
    """Scores, labels and video ids for one pass over ``batches`` (padding removed)."""
    fwd = _jitted_forward(model)
    if mesh is not None:
        variables = jax.device_put(variables, NamedSharding(mesh, P()))
        img_sharding = NamedSharding(mesh, P(AXIS))
    scores, labels, vids = [], [], []
    for b in batches:
        x = b["image"]
        x = jax.device_put(x, img_sharding) if mesh is not None else x
        s = np.asarray(fwd(variables, x))
        m = np.asarray(b.get("mask", np.ones(len(s), bool)), bool)
        scores.append(s[m])
        labels.append(np.asarray(b["label"])[m])
        vids.append(np.asarray(b.get("video_id", np.arange(len(s)).astype(str)))[m])
    if not scores:
        raise ValueError("the validation split is empty")
    return {
        "scores": np.concatenate(scores),
        "labels": np.concatenate(labels),
        "video_ids": np.concatenate(vids),
    }


def validation_metrics(res: dict[str, np.ndarray]) -> dict[str, float]:
    """Frame and video (mean frame score) metrics; the threshold is Youden's J on these data."""
    y, s = res["labels"], res["scores"]
    frame = metrics.summarize(y, s)
    _, vy, vs = metrics.aggregate_by_video(res["video_ids"], y, s)
    video = metrics.summarize(vy, vs)
    p = np.clip(s.astype(np.float64), 1e-7, 1 - 1e-7)
    val_ce = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return {
        "frame_auc": frame["auc"],
        "frame_eer": frame["eer"],
        "frame_acc": frame["acc"],
        "threshold": frame["threshold"],
        "video_auc": video["auc"],
        "video_eer": video["eer"],
        "video_acc": video["acc"],
        "video_threshold": video["threshold"],
        "val_ce": val_ce,
        "n_frames": frame["n"],
        "n_videos": video["n"],
    }


# ------------------------------------------------------------------------------- checkpoints
def _managers(workdir: Path, keep: int) -> tuple[ocp.CheckpointManager, ocp.CheckpointManager]:
    # Synchronous saves: a checkpoint on disk is complete (Orbax renames a finished temporary
    # directory), so a SIGKILL at any moment leaves the previous one intact.
    def opts(k):
        return ocp.CheckpointManagerOptions(
            max_to_keep=k, create=True, enable_async_checkpointing=False
        )

    ck = workdir / "checkpoints"
    return (
        ocp.CheckpointManager(ck / "latest", options=opts(keep)),
        ocp.CheckpointManager(ck / "best", options=opts(1)),
    )


def _restore_model(mgr: ocp.CheckpointManager, step: int, target: Any) -> tuple[Any, dict]:
    r = mgr.restore(
        step,
        args=ocp.args.Composite(
            model=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
        ),
    )
    return r["model"], r["meta"]


@dataclasses.dataclass
class Run:
    """A trained run, as ``load_run`` returns it (for evaluate/predict)."""

    config: ml_collections.ConfigDict
    model: Any
    variables: dict
    step: int
    val_metrics: dict
    workdir: Path
    checkpoint: str


def load_run(workdir: str | Path, checkpoint: str | int = "best") -> Run:
    """Model, variables and validation metrics of a run's ``best``/``latest``/step checkpoint."""
    from aird_jax.models import build_model

    workdir = Path(workdir).resolve()
    config = cfg.read_run_config(workdir)
    model = build_model(config.model, axis_name=None)
    s = config.data.image_size
    abstract = jax.eval_shape(
        partial(model.init, train=False),
        {"params": jax.random.key(0), "dropout": jax.random.key(1)},
        jnp.zeros((1, s, s, 3), jnp.float32),
    )
    target = {"params": abstract["params"], "batch_stats": abstract.get("batch_stats", {})}
    target = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), target)
    latest, best = _managers(workdir, 2)
    if checkpoint == "best":
        mgr, step = best, best.latest_step()
    elif checkpoint == "latest":
        mgr, step = latest, latest.latest_step()
    elif isinstance(checkpoint, int) or str(checkpoint).isdigit():
        step = int(checkpoint)
        mgr = best if step in best.all_steps() else latest
        if step not in mgr.all_steps():
            raise FileNotFoundError(
                f"no checkpoint at step {step} in {workdir}/checkpoints; available: "
                f"latest {latest.all_steps()}, best {best.all_steps()}"
            )
    else:
        raise ValueError(
            f"checkpoint must be 'best', 'latest' or a step number, got {checkpoint!r}"
        )
    if step is None:
        raise FileNotFoundError(
            f"no {checkpoint!r} checkpoint in {workdir}/checkpoints (a 'best' one is written "
            "after the first completed epoch)"
        )
    variables, meta = _restore_model(mgr, step, target)
    return Run(
        config,
        model,
        {"params": variables["params"], "batch_stats": variables["batch_stats"]},
        int(step),
        dict(meta.get("val_metrics") or {}),
        workdir,
        str(checkpoint),
    )


class _Sigterm:
    """SIGTERM -> finish the current step, write a checkpoint, exit (rerun to resume)."""

    def __init__(self):
        self.flag = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, *_):
        self.flag = True

    def __exit__(self, *_):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


class _IteratorState:
    """Adapts a contract iterator (``get_state() -> JSON-able``) to grain's Orbax handler, which
    stores per-process JSON files (so each host restores its own data shard's position)."""

    def __init__(self, it: Any):
        self.it = it

    def get_state(self) -> bytes:
        return json.dumps(self.it.get_state(), sort_keys=True).encode()

    def set_state(self, state: bytes | str) -> None:
        self.it.set_state(json.loads(state))

    def start_prefetch(self) -> None:
        if hasattr(self.it, "start_prefetch"):
            self.it.start_prefetch()


class TrainingDiverged(FloatingPointError):
    pass


# ------------------------------------------------------------------------------------ loop
def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    *,
    data: Any = None,
    _crash_after_step: int | None = None,
) -> dict:
    """Train with validation each epoch; resumable. Returns best validation metrics + paths.

    ``data`` is the data module (default ``aird_jax.data.pipeline``): anything with
    ``num_examples``, ``train_loader`` and ``eval_loader`` as the contract describes.
    ``_crash_after_step`` (tests only) raises after that global step without saving anything,
    i.e. behaves like SIGKILL.
    """
    cfg.validate_config(config)
    workdir = Path(workdir).resolve()
    if data is None:
        from aird_jax.data import pipeline as data
    par = make_parallel(config)
    cfg.check_or_write_run_config(config, workdir, write=jax.process_index() == 0)
    t, dcfg = config.train, config.data
    n_proc, proc = jax.process_count(), jax.process_index()
    is_chief = proc == 0

    n_train = data.num_examples(dcfg, dcfg.train_split)
    spe = int(t.steps_per_epoch) or n_train // t.batch_size
    if spe < 1:
        raise ValueError(
            f"the training split has {n_train} examples, fewer than one batch of "
            f"{t.batch_size}; lower train.batch_size"
        )
    if is_chief:
        print(
            f"aird_jax: variant {config.get('variant', '?')} | {par.n} {jax.devices()[0].platform}"
            f" device(s), {par.mode}, {n_proc} host(s) | {n_train} training examples, "
            f"{spe} steps/epoch of {t.batch_size} | workdir {workdir}",
            flush=True,
        )
        if config.get("scaled_down"):
            print(f"NOTE: scaled down from the paper's setting: {config.scaled_down}", flush=True)
    model, host_state, tx, schedules = init_state(config, spe)
    from aird_jax.models import build_model

    eval_model = build_model(config.model, axis_name=None)
    step_fn = compile_train_step(make_train_step(config, model, tx), par)

    loader = data.train_loader(
        dcfg,
        seed=config.seed,
        batch_size=t.batch_size // n_proc,
        shard_index=proc,
        shard_count=n_proc,
    )
    it = iter(loader)
    latest, best = _managers(workdir, t.keep_checkpoints)
    meta = {
        "epoch": 0,
        "step_in_epoch": 0,
        "acc": {},
        "history": [],
        "best": None,
        "bad_epochs": 0,
        "stopped": None,
        "val_metrics": None,
    }
    resumed_from = latest.latest_step()
    if resumed_from is not None:
        target = {
            "model": {"params": host_state["params"], "batch_stats": host_state["batch_stats"]},
            "opt": {"opt_state": host_state["opt_state"], "step": host_state["step"]},
        }
        r = latest.restore(
            resumed_from,
            args=ocp.args.Composite(
                model=ocp.args.StandardRestore(target["model"]),
                opt=ocp.args.StandardRestore(target["opt"]),
                data=grain.checkpoint.CheckpointRestore(_IteratorState(it)),
                meta=ocp.args.JsonRestore(),
            ),
        )
        host_state = {
            "step": np.asarray(r["opt"]["step"], np.int32),
            "params": r["model"]["params"],
            "batch_stats": r["model"]["batch_stats"],
            "opt_state": r["opt"]["opt_state"],
        }
        meta = dict(r["meta"])
        if is_chief:
            print(
                f"Resuming from {workdir}/checkpoints/latest step {resumed_from} "
                f"(epoch {meta['epoch'] + 1}, step {meta['step_in_epoch']} of {spe})"
            )
    state = par.put_state(host_state)
    seed_key = par.put_state(seed_key_data(config.seed))
    del host_state

    writer = None
    if is_chief:
        from tensorboardX import SummaryWriter

        writer = SummaryWriter(str(workdir / "tensorboard"))
        _write_metrics_jsonl(workdir, meta["history"])

    def save_latest(step: int, state) -> None:
        hs = par.get_state(state)
        latest.save(
            step,
            args=ocp.args.Composite(
                model=ocp.args.StandardSave(
                    {"params": hs["params"], "batch_stats": hs["batch_stats"]}
                ),
                opt=ocp.args.StandardSave({"opt_state": hs["opt_state"], "step": hs["step"]}),
                data=grain.checkpoint.CheckpointSave(_IteratorState(it)),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )

    def last_good() -> str:
        s = latest.latest_step()
        return f"{workdir}/checkpoints/latest/{s}" if s is not None else "none yet"

    pending: list[tuple[int, Any]] = []

    def drain() -> dict[str, float] | None:
        """Fetch pending step metrics; stop on NaN/Inf before anything is saved."""
        last = None
        for gstep, m in pending:
            mm = _fetch_metrics(m, par)
            if not all(math.isfinite(v) for v in mm.values()):
                raise TrainingDiverged(
                    f"non-finite training loss/gradient at step {gstep} "
                    f"(epoch {meta['epoch'] + 1}): "
                    f"{mm}. Training stopped; the last good checkpoint is kept at {last_good()}. "
                    "Lower --config.optim.lr or check the input data, then rerun in a new "
                    "--workdir (or rerun here to retry from that checkpoint)."
                )
            a = meta["acc"]
            for k, v in mm.items():
                a[k] = a.get(k, 0.0) + v
            a["n"] = a.get("n", 0) + 1
            if writer is not None and gstep % max(1, t.log_every_steps) == 0:
                for k, v in mm.items():
                    writer.add_scalar(f"train/{k}", v, gstep)
                writer.add_scalar("train/lr_head", float(schedules["head"](gstep - 1)), gstep)
            last = mm
        pending.clear()
        return last

    gstep = meta["epoch"] * spe + meta["step_in_epoch"]
    with _Sigterm() as sigterm:
        while meta["stopped"] is None and meta["epoch"] < t.epochs:
            epoch = meta["epoch"]
            pbar = _progress(t, epoch, spe, meta["step_in_epoch"], is_chief)
            t0, n_img = time.perf_counter(), 0
            while meta["step_in_epoch"] < spe:
                batch = par.put_batch(
                    {k: np.asarray(v) for k, v in next(it).items() if k in ("image", "label")}
                )
                state, m = step_fn(state, batch, seed_key)
                gstep += 1
                meta["step_in_epoch"] += 1
                pending.append((gstep, m))
                n_img += t.batch_size
                if _crash_after_step is not None and gstep >= _crash_after_step:
                    raise KeyboardInterrupt(f"simulated crash after step {gstep}")
                if gstep % max(1, t.log_every_steps) == 0 or meta["step_in_epoch"] == spe:
                    last = drain()
                    if pbar is not None and last is not None:
                        rate = n_img / max(time.perf_counter() - t0, 1e-9)
                        pbar.set_postfix(loss=f"{last['loss']:.4f}", img_s=f"{rate:.1f}")
                        if writer is not None:
                            writer.add_scalar("train/images_per_s", rate, gstep)
                if pbar is not None:
                    pbar.update(1)
                mid_ckpt = t.checkpoint_every_steps and gstep % t.checkpoint_every_steps == 0
                if (mid_ckpt or sigterm.flag) and meta["step_in_epoch"] < spe:
                    drain()
                    save_latest(gstep, state)
                    if sigterm.flag:
                        if pbar is not None:
                            pbar.close()
                        print(
                            f"SIGTERM: checkpoint written at step {gstep}; rerun the same "
                            "command to resume.",
                            flush=True,
                        )
                        raise SystemExit(143)
            if pbar is not None:
                pbar.close()
            drain()
            # ---- end of epoch: validate, select, checkpoint, log
            acc = meta["acc"]
            train_m = {f"train_{k}": acc[k] / acc["n"] for k in acc if k != "n"}
            hs = par.get_state(state)
            variables = {"params": hs["params"], "batch_stats": hs["batch_stats"]}
            val = validation_metrics(
                evaluate_split(
                    eval_model,
                    variables,
                    data.eval_loader(dcfg, dcfg.val_split, batch_size=t.eval_batch_size),
                    par.local_mesh,
                )
            )
            prev = meta["best"]["frame_auc"] if meta["best"] else -1.0
            improved = val["frame_auc"] > prev
            meta["bad_epochs"] = 0 if improved else meta["bad_epochs"] + 1
            record = {
                "epoch": epoch + 1,
                "step": gstep,
                "lr": float(schedules["head"](gstep - 1)),
                **train_m,
                **val,
                "is_best": bool(improved),
            }
            meta["history"].append(record)
            meta["val_metrics"] = val
            if improved:
                meta["best"] = {"epoch": epoch + 1, "step": gstep, **val}
            meta["epoch"], meta["step_in_epoch"], meta["acc"] = epoch + 1, 0, {}
            if meta["bad_epochs"] >= t.patience:
                meta["stopped"] = (
                    f"early stopping: validation frame AUC has not improved for {t.patience} epochs"
                )
            elif meta["epoch"] >= t.epochs:
                meta["stopped"] = f"completed {t.epochs} epochs"
            if improved:
                if gstep in best.all_steps():  # written just before a crash; redo it
                    best.delete(gstep)
                best.save(
                    gstep,
                    args=ocp.args.Composite(
                        model=ocp.args.StandardSave(variables),
                        meta=ocp.args.JsonSave(
                            {"val_metrics": val, "epoch": epoch + 1, "step": gstep}
                        ),
                    ),
                    force=True,
                )
            save_latest(gstep, state)
            if is_chief:
                _write_metrics_jsonl(workdir, meta["history"])
                for k, v in record.items():
                    if isinstance(v, float):
                        writer.add_scalar(f"epoch/{k}", v, epoch + 1)
                writer.flush()
                print(
                    f"epoch {epoch + 1}/{t.epochs}: train loss {train_m.get('train_loss', 0):.4f}"
                    f" | val frame AUC {val['frame_auc']:.4f} video AUC {val['video_auc']:.4f}"
                    f"{' (best)' if improved else ''}",
                    flush=True,
                )
            if _crash_after_step is not None and gstep >= _crash_after_step:
                raise KeyboardInterrupt(f"simulated crash after step {gstep}")
    latest.wait_until_finished()
    best.wait_until_finished()
    if writer is not None:
        writer.close()
    summary = {
        "best": meta["best"],
        "stopped": meta["stopped"],
        "epochs": meta["epoch"],
        "step": gstep,
        "workdir": str(workdir),
        "metrics": str(workdir / "metrics.jsonl"),
        "tensorboard": str(workdir / "tensorboard"),
        "best_checkpoint": str(workdir / "checkpoints" / "best"),
        "latest_checkpoint": str(workdir / "checkpoints" / "latest"),
    }
    if is_chief:
        _print_summary(summary)
    return summary


def _progress(t, epoch: int, total: int, initial: int, enabled: bool):
    if not (enabled and t.progress):
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=f"epoch {epoch + 1}/{t.epochs}",
        unit="step",
        dynamic_ncols=True,
        file=sys.stderr,
    )


def _write_metrics_jsonl(workdir: Path, history: list[dict]) -> None:
    # Rewritten from the checkpointed history so a resumed run never duplicates or loses lines.
    tmp = workdir / "metrics.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in history))
    os.replace(tmp, workdir / "metrics.jsonl")


def _print_summary(s: dict) -> None:
    b = s["best"] or {}
    rows = [("stopped", s["stopped"]), ("best epoch", b.get("epoch")), ("best step", b.get("step"))]
    for k in (
        "frame_auc",
        "frame_eer",
        "frame_acc",
        "threshold",
        "video_auc",
        "video_eer",
        "video_acc",
        "n_frames",
        "n_videos",
    ):
        if k in b:
            v = b[k]
            rows.append((f"val {k}", f"{v:.4f}" if isinstance(v, float) else v))
    rows += [
        ("metrics", s["metrics"]),
        ("tensorboard", s["tensorboard"]),
        ("best checkpoint", s["best_checkpoint"]),
        ("latest checkpoint", s["latest_checkpoint"]),
    ]
    w = max(len(k) for k, _ in rows)
    print("\nBest checkpoint (selected on validation only):")
    for k, v in rows:
        print(f"  {k:<{w}}  {v}")
