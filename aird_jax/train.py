"""Training with validation each epoch (cf. flax examples/imagenet): the train step and the loop.

The train step is written once, per device, with ``axis_name="data"`` collectives (gradient
``pmean``, cross-replica BatchNorm, the paper's loss over the all-gathered global batch), so the
result does not depend on how many devices share the batch; :mod:`aird_jax.parallel` maps it onto
the devices. Each epoch trains, then scores the validation split through the one scoring path
(:mod:`aird_jax.inference`; frame and video AUC, the threshold chosen on validation by Youden's J),
selects on validation only, and checkpoints (:mod:`aird_jax.checkpoint`). Rerunning the same
command resumes from the latest checkpoint and ends with bitwise the same parameters as an
uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aird_jax import config as cfg
from aird_jax import inference, losses, metrics, optim
from aird_jax.checkpoint import RunCheckpoints
from aird_jax.data import pipeline
from aird_jax.models import build_model, is_backbone_path, load_pretrained
from aird_jax.parallel import AXIS, Parallel, make_parallel
from aird_jax.prefetch import DevicePrefetch
from aird_jax.run_log import RunLog


class TrainingDiverged(FloatingPointError):
    pass


def nonfinite_arrays(tree: Any) -> list[str]:
    """Paths of the floating-point arrays of a host tree that hold NaN or Inf.

    Cheap enough to run before every save: min and max of each array (NaN propagates through
    both, an Inf is one of them), no temporaries.
    """
    bad = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        a = np.asarray(leaf)
        if a.size and np.issubdtype(a.dtype, np.inexact):
            if not (np.isfinite(a.min()) and np.isfinite(a.max())):
                bad.append(jax.tree_util.keystr(path))
    return bad


def class_counts_message(role: str, split: str, n_real: int, n_fake: int, when: str) -> str:
    return (
        f"the {role} split {split!r} has {n_real} real and {n_fake} fake examples{when}: "
        "training needs both classes in the training and validation splits (AUC, EER and the "
        "threshold are undefined otherwise); check data.train_split/data.val_split, "
        "data.methods and data.max_examples"
    )


def check_classes(config: ml_collections.ConfigDict, data: Any) -> None:
    """Refuse a training or validation split without both classes before anything runs.

    Uses the optional data-contract function ``class_counts(data_cfg, split) -> {0: n_real,
    1: n_fake}``; a data module without it is checked after the first validation instead.
    """
    counts_of = getattr(data, "class_counts", None)
    if counts_of is None:
        return
    d = config.data
    for role, split in (("training", d.train_split), ("validation", d.val_split)):
        c = counts_of(d, split)
        n_real, n_fake = int(c.get(0, 0)), int(c.get(1, 0))
        if n_real == 0 or n_fake == 0:
            raise ValueError(class_counts_message(role, split, n_real, n_fake, ""))


# ------------------------------------------------------------------------------- train state
def init_state(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> tuple[Any, Any, optax.GradientTransformation, dict]:
    """(train-mode model with axis_name, host state, optimiser, schedules)."""
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
    """The per-device step: (state, batch, seed_key) -> (state, metrics). Pure; collectives on
    AXIS."""
    lam, temp = float(config.loss.lam), float(config.loss.temperature)
    xray_w = float(config.loss.get("xray_weight", 0.0))

    def step_fn(state, batch, seed_key):
        # Dropout key from (seed, step, device index): reproducible, different per device. The
        # seed's key is an argument (not a constant) so runs that differ only in seed share one
        # compiled program.
        base_key = jax.random.wrap_key_data(seed_key)
        key = jax.random.fold_in(
            jax.random.fold_in(base_key, state["step"]), jax.lax.axis_index(AXIS)
        )

        def loss_fn(params):
            out, upd = model.apply(
                {"params": params, "batch_stats": state["batch_stats"]},
                batch["image"],
                train=True,
                rngs={"dropout": key},
                mutable=["batch_stats"],
            )
            # The paper's loss (eq. 7) over the GLOBAL batch, so the objective is the same for
            # any number of devices. all_gather's transpose sums the cotangents of every device's
            # (equal) loss, which the gradient pmean below divides back out.
            gather = partial(jax.lax.all_gather, axis_name=AXIS, tiled=True)
            logits, labels = gather(out["logits"]), gather(batch["label"])
            loss, parts = losses.total_loss(logits, gather(out["embedding"]), labels, lam, temp)
            if "xray_logits" in out and "xray" in batch:  # Face X-ray: + w * BCE on the map
                parts["xray"] = losses.xray_loss(gather(out["xray_logits"]), gather(batch["xray"]))
                loss = loss + xray_w * parts["xray"]
            acc = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
            return loss, (upd.get("batch_stats", {}), parts, acc)

        # Differentiate w.r.t. a per-device ("varying") copy of the replicated params. Without
        # the cast, shard_map's autodiff already psums the gradient of a replicated input over
        # devices, and the pmean below would leave n_devices x the mean gradient (which then
        # changes gradient clipping and the coupled weight decay with the device count). The
        # cast also gives custom-VJP layers (the shifted depthwise conv) cotangents of the type
        # shard_map expects.
        local_params = jax.lax.pcast(state["params"], AXIS, to="varying")
        grads, (new_bs, parts, acc) = jax.grad(loss_fn, has_aux=True)(local_params)
        grads = jax.lax.pmean(grads, AXIS)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        # Every device already holds the same global values; pmean makes that explicit.
        ce, con = jax.lax.pmean(parts["ce"], AXIS), jax.lax.pmean(parts["supcon"], AXIS)
        out = {
            "loss": ce + lam * con,
            "ce": ce,
            "supcon": con,
            "acc": jax.lax.pmean(acc, AXIS),
            "grad_norm": optax.tree.norm(grads),
        }
        if "xray" in parts:
            out["xray"] = jax.lax.pmean(parts["xray"], AXIS)
            out["loss"] = out["loss"] + xray_w * out["xray"]
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


# -------------------------------------------------------------------------------- validation
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


def score_split(scorer: inference.Scorer, batches) -> dict[str, np.ndarray]:
    """Scores, labels and video ids of one pass over an evaluation loader."""
    scores, labels, vids = inference.score_batches(scorer, batches)
    if scores.size == 0:
        raise ValueError("the validation split is empty")
    return {"scores": scores, "labels": labels, "video_ids": vids}


# ------------------------------------------------------------------------------------ loop
@dataclasses.dataclass
class LoopState:
    """The loop's bookkeeping, checkpointed as JSON with the model (same keys since v0.1)."""

    epoch: int = 0
    step_in_epoch: int = 0
    acc: dict = dataclasses.field(default_factory=dict)  # running sums of the step metrics
    history: list = dataclasses.field(default_factory=list)  # one record per epoch
    best: dict | None = None
    bad_epochs: int = 0
    stopped: str | None = None
    val_metrics: dict | None = None

    def add_step(self, m: dict[str, float]) -> None:
        for k, v in m.items():
            self.acc[k] = self.acc.get(k, 0.0) + v
        self.acc["n"] = self.acc.get("n", 0) + 1

    def train_means(self) -> dict[str, float]:
        return {f"train_{k}": v / self.acc["n"] for k, v in self.acc.items() if k != "n"}


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


def steps_per_epoch(config: ml_collections.ConfigDict, data: Any) -> tuple[int, int]:
    """(training examples, steps per epoch); refuses a split smaller than one batch."""
    t = config.train
    n_train = data.num_examples(config.data, config.data.train_split)
    spe = int(t.steps_per_epoch) or n_train // t.batch_size
    if spe < 1:
        raise ValueError(
            f"the training split has {n_train} examples, fewer than one batch of "
            f"{t.batch_size}; lower train.batch_size"
        )
    return n_train, spe


def _batch_keys(raw: dict) -> tuple[str, ...]:
    """What the step takes from a host batch: image and label, plus X-ray targets when the
    data makes them (``data.fakes=sbi``)."""
    return ("image", "label", "xray") if "xray" in raw else ("image", "label")


class Trainer:
    """One run's loop: built from the config, then :meth:`run` until stopped or done."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        workdir: Path,
        par: Parallel,
        data: Any,
        spe: int,
        crash_after_step: int | None = None,
    ):
        self.config, self.t, self.workdir, self.par = config, config.train, workdir, par
        self.data, self.spe, self.crash_after = data, spe, crash_after_step
        n_proc, proc = jax.process_count(), jax.process_index()
        model, host_state, tx, self.schedules = init_state(config, spe)
        self.eval_model = build_model(config.model, axis_name=None)
        self.step_fn = par.compile_step(make_train_step(config, model, tx))
        loader = data.train_loader(
            config.data,
            seed=config.seed,
            batch_size=self.t.batch_size // n_proc,
            shard_index=proc,
            shard_count=n_proc,
        )
        # Batches go to the devices train.prefetch steps ahead; checkpoints record the data
        # position of the batches consumed.
        self.it = DevicePrefetch(
            iter(loader),
            lambda raw: par.put_batch({k: np.asarray(raw[k]) for k in _batch_keys(raw)}),
            config.train.get("prefetch", 0),
        )
        # Only now (model built, data opened) does anything get written to the workdir.
        self.log = RunLog(workdir, config.train, enabled=proc == 0)
        self.ckpt = RunCheckpoints(workdir, self.t.keep_checkpoints)
        self.loop = LoopState()
        if self.ckpt.latest_step() is not None:
            host_state, meta = self.ckpt.restore_latest(host_state, self.it)
            self.loop = LoopState(**meta)
            self.log.print(
                f"Resuming from {workdir}/checkpoints/latest step {self.ckpt.latest_step()} "
                f"(epoch {self.loop.epoch + 1}, step {self.loop.step_in_epoch} of {spe})"
            )
        self.state = par.put_state(host_state)
        self.seed_key = par.put_state(seed_key_data(config.seed))
        self.gstep = self.loop.epoch * spe + self.loop.step_in_epoch
        self.pending: list[tuple[int, Any]] = []
        self.compiled = False  # the first step of this process compiles the train step

    # ------------------------------------------------------------------ steps
    def _lr(self) -> float:
        return float(self.schedules["head"](self.gstep - 1))

    def _lrs(self, gstep: int) -> dict[str, float]:
        """Learning rate of each parameter group (head, backbone) used by step ``gstep``."""
        return {k: float(s(gstep - 1)) for k, s in self.schedules.items()}

    def diverged(self, what: str) -> TrainingDiverged:
        """The divergence stop, naming the checkpoint that really is good (every checkpoint is
        checked finite before it is written), or saying there is none."""
        step = self.ckpt.latest_step()
        if step is None:
            tail = (
                "No checkpoint had been written (nothing to resume or load). Lower "
                "--config.optim.lr or check the input data, then rerun in a new --workdir."
            )
        else:
            tail = (
                f"The last good checkpoint is kept at {self.ckpt.describe_latest()} (step "
                f"{step}; load it with load_run(workdir, 'latest')). Lower --config.optim.lr or "
                "check the input data, then rerun in a new --workdir."
            )
        return TrainingDiverged(f"training diverged: {what}. Training stopped. {tail}")

    def check_finite(self, host: dict) -> None:
        """Stop before saving parameters, batch statistics or optimiser state holding NaN/Inf."""
        bad = nonfinite_arrays(host)
        if bad:
            n = len(jax.tree.leaves(host))
            raise self.diverged(
                f"non-finite parameters/optimiser state after step {self.gstep} (epoch "
                f"{self.loop.epoch + 1}): {len(bad)} of {n} arrays hold NaN/Inf, e.g. "
                f"{', '.join(bad[:3])}"
            )

    def drain(self) -> dict[str, float] | None:
        """Fetch pending step metrics; stop on NaN/Inf before anything is saved."""
        last = None
        for gstep, m in self.pending:
            mm = self.par.get_metrics(m)
            if not all(math.isfinite(v) for v in mm.values()):
                shown = ", ".join(f"{k} {v:.4g}" for k, v in mm.items())
                raise self.diverged(
                    f"non-finite training loss/gradient at step {gstep} "
                    f"(epoch {self.loop.epoch + 1}): {shown}"
                )
            self.loop.add_step(mm)
            if gstep % max(1, self.t.log_every_steps) == 0:
                self.log.train_metrics(gstep, mm, self._lrs(gstep))
            last = mm
        self.pending.clear()
        return last

    def save_latest(self) -> None:
        host = self.par.get_state(self.state)
        self.check_finite(host)
        self.ckpt.save_latest(self.gstep, host, self.it, dataclasses.asdict(self.loop))

    def _crash_check(self) -> None:
        if self.crash_after is not None and self.gstep >= self.crash_after:
            raise KeyboardInterrupt(f"simulated crash after step {self.gstep}")

    def train_epoch(self, sigterm: _Sigterm) -> None:
        loop, t = self.loop, self.t
        self.log.start_epoch(loop.epoch, self.spe, loop.step_in_epoch, compiling=not self.compiled)
        while loop.step_in_epoch < self.spe:
            batch = next(self.it)
            self.state, m = self.step_fn(self.state, batch, self.seed_key)
            if not self.compiled:  # the bar's clock (and ETA) starts after compilation
                jax.block_until_ready(m)
                self.compiled = True
            self.gstep += 1
            loop.step_in_epoch += 1
            self.pending.append((self.gstep, m))
            self.log.step_done()
            self._crash_check()
            if self.gstep % max(1, t.log_every_steps) == 0 or loop.step_in_epoch == self.spe:
                last = self.drain()
                if last is not None:
                    self.log.rate(self.gstep, last)
            mid_ckpt = t.checkpoint_every_steps and self.gstep % t.checkpoint_every_steps == 0
            if (mid_ckpt or sigterm.flag) and loop.step_in_epoch < self.spe:
                self.drain()
                self.save_latest()
                if sigterm.flag:
                    self.log.close_bar()
                    print(
                        f"SIGTERM: checkpoint written at step {self.gstep}; rerun the same "
                        "command to resume.",
                        flush=True,
                    )
                    raise SystemExit(143)
        self.log.close_bar()
        self.drain()

    # ------------------------------------------------------------------ epoch end
    def validate(self, variables: dict) -> dict[str, float]:
        dcfg = self.config.data
        batches = self.data.eval_loader(dcfg, dcfg.val_split, batch_size=self.t.eval_batch_size)
        scorer = inference.Scorer(self.eval_model, variables, self.par.local_mesh)
        try:
            res = score_split(scorer, batches)
        except inference.NonFiniteScores as e:
            raise self.diverged(
                f"non-finite validation scores after epoch {self.loop.epoch + 1} ({e})"
            ) from e
        n_fake = int(np.sum(res["labels"] == 1))
        n_real = int(res["labels"].size - n_fake)
        if n_real == 0 or n_fake == 0:  # a data module without class_counts gets here
            raise ValueError(
                class_counts_message(
                    "validation", dcfg.val_split, n_real, n_fake, " (found at the first validation)"
                )
            )
        return validation_metrics(res)

    def end_epoch(self) -> None:
        """Validate, select on validation, checkpoint, log."""
        loop, t = self.loop, self.t
        hs = self.par.get_state(self.state)
        self.check_finite(hs)  # before validation, the best checkpoint and the latest one
        variables = {"params": hs["params"], "batch_stats": hs["batch_stats"]}
        val = self.validate(variables)
        improved = val["frame_auc"] > (loop.best["frame_auc"] if loop.best else -1.0)
        loop.bad_epochs = 0 if improved else loop.bad_epochs + 1
        epoch = loop.epoch + 1
        record = {
            "epoch": epoch,
            "step": self.gstep,
            "lr": self._lr(),
            **loop.train_means(),
            **val,
            "is_best": bool(improved),
        }
        loop.history.append(record)
        loop.val_metrics = val
        if improved:
            loop.best = {"epoch": epoch, "step": self.gstep, **val}
        loop.epoch, loop.step_in_epoch, loop.acc = epoch, 0, {}
        if loop.bad_epochs >= t.patience:
            loop.stopped = (
                f"early stopping: validation frame AUC has not improved for {t.patience} epochs"
            )
        elif loop.epoch >= t.epochs:
            loop.stopped = f"completed {t.epochs} epochs"
        if improved:
            meta = {"val_metrics": val, "epoch": epoch, "step": self.gstep}
            self.ckpt.save_best(self.gstep, variables, meta)
        self.save_latest()
        self.log.epoch(record, loop.history, improved)
        self._crash_check()

    def run(self) -> dict:
        self.log.start(self.loop.history)
        with _Sigterm() as sigterm:
            while self.loop.stopped is None and self.loop.epoch < self.t.epochs:
                self.train_epoch(sigterm)
                self.end_epoch()
        self.ckpt.wait()
        ck = self.workdir / "checkpoints"
        summary = {
            "best": self.loop.best,
            "stopped": self.loop.stopped,
            "epochs": self.loop.epoch,
            "step": self.gstep,
            "workdir": str(self.workdir),
            "metrics": str(self.workdir / "metrics.jsonl"),
            "tensorboard": str(self.workdir / "tensorboard"),
            "best_checkpoint": str(ck / "best"),
            "latest_checkpoint": str(ck / "latest"),
        }
        self.log.close(summary)
        return summary


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    *,
    data: Any = None,
    _crash_after_step: int | None = None,
) -> dict:
    """Train with validation each epoch; resumable. Returns best validation metrics + paths.

    ``data`` is the data module (default :mod:`aird_jax.data.pipeline`): anything with
    ``num_examples``, ``train_loader`` and ``eval_loader`` as the contract describes.
    ``_crash_after_step`` (tests only) raises after that global step without saving anything,
    i.e. behaves like SIGKILL.
    """
    cfg.validate_config(config)
    workdir = Path(workdir).resolve()
    cfg.check_workdir(workdir)
    data = pipeline if data is None else data
    par = make_parallel(config)
    chief = jax.process_index() == 0
    # A workdir holding another run is refused now; config.json is written only once the run
    # really starts (data opened and checked, model built), so a failed start leaves no record
    # that would refuse the corrected command.
    cfg.check_run_config(config, workdir)
    n_train, spe = steps_per_epoch(config, data)
    check_classes(config, data)
    if chief:
        print(
            f"aird_jax: variant {config.get('variant', '?')} | {par.n} {jax.devices()[0].platform}"
            f" device(s), {par.mode}, {jax.process_count()} host(s) | {n_train} training "
            f"examples, {spe} steps/epoch of {config.train.batch_size} | workdir {workdir}",
            flush=True,
        )
        note = cfg.paper_difference(config)
        if note:
            kind = "scaled down from" if config.get("scaled_down") else "differs from"
            print(f"NOTE: {kind} the paper's setting: {note}", flush=True)
    trainer = Trainer(config, workdir, par, data, spe, _crash_after_step)
    if chief:
        cfg.write_run_config(config, workdir)
    return trainer.run()
