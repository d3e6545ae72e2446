"""Orbax checkpoints of a run: what is saved, where, and how a trained run is loaded back.

``<workdir>/checkpoints/latest``: model (params, batch_stats), optimiser state and step, the
grain data-iterator state (per process) and the loop's bookkeeping (JSON), written every epoch and
every ``train.checkpoint_every_steps``; a rerun resumes from it bitwise. ``checkpoints/best``:
model and validation metrics of the best validation epoch (selection never sees a test set).
Saves are synchronous: Orbax renames a finished temporary directory, so a SIGKILL at any moment
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import dataclasses
import json
from functools import partial
from pathlib import Path
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from aird_jax import config as cfg
from aird_jax.models import build_model


class IteratorState:
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


def _model_part(state: dict) -> dict:
    return {"params": state["params"], "batch_stats": state["batch_stats"]}


def _opt_part(state: dict) -> dict:
    return {"opt_state": state["opt_state"], "step": state["step"]}


class RunCheckpoints:
    """The ``latest`` and ``best`` checkpoint managers of one run folder."""

    def __init__(self, workdir: Path, keep: int = 2):
        def opts(k: int) -> ocp.CheckpointManagerOptions:
            return ocp.CheckpointManagerOptions(
                max_to_keep=k, create=True, enable_async_checkpointing=False
            )

        self.dir = Path(workdir) / "checkpoints"
        self.latest = ocp.CheckpointManager(self.dir / "latest", options=opts(keep))
        self.best = ocp.CheckpointManager(self.dir / "best", options=opts(1))

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def describe_latest(self) -> str:
        """Path of the newest ``latest`` checkpoint, for messages."""
        s = self.latest.latest_step()
        return f"{self.dir}/latest/{s}" if s is not None else "none yet"

    def save_latest(self, step: int, host_state: dict, iterator: Any, meta: dict) -> None:
        self.latest.save(
            step,
            args=ocp.args.Composite(
                model=ocp.args.StandardSave(_model_part(host_state)),
                opt=ocp.args.StandardSave(_opt_part(host_state)),
                data=grain.checkpoint.CheckpointSave(IteratorState(iterator)),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )

    def restore_latest(self, host_state: dict, iterator: Any) -> tuple[dict, dict]:
        """(host state, loop meta) of the newest ``latest``; the iterator is repositioned."""
        r = self.latest.restore(
            self.latest.latest_step(),
            args=ocp.args.Composite(
                model=ocp.args.StandardRestore(_model_part(host_state)),
                opt=ocp.args.StandardRestore(_opt_part(host_state)),
                data=grain.checkpoint.CheckpointRestore(IteratorState(iterator)),
                meta=ocp.args.JsonRestore(),
            ),
        )
        state = {
            "step": np.asarray(r["opt"]["step"], np.int32),
            "params": r["model"]["params"],
            "batch_stats": r["model"]["batch_stats"],
            "opt_state": r["opt"]["opt_state"],
        }
        return state, dict(r["meta"])

    def save_best(self, step: int, variables: dict, meta: dict) -> None:
        if step in self.best.all_steps():  # written just before a crash; redo it
            self.best.delete(step)
        self.best.save(
            step,
            args=ocp.args.Composite(
                model=ocp.args.StandardSave(variables), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def resolve(self, checkpoint: str | int) -> tuple[ocp.CheckpointManager, int]:
        """The manager and step that 'best' | 'latest' | a step number names."""
        if checkpoint == "best":
            mgr, step = self.best, self.best.latest_step()
        elif checkpoint == "latest":
            mgr, step = self.latest, self.latest.latest_step()
        elif isinstance(checkpoint, int) or str(checkpoint).isdigit():
            step = int(checkpoint)
            mgr = self.best if step in self.best.all_steps() else self.latest
            if step not in mgr.all_steps():
                raise FileNotFoundError(
                    f"no checkpoint at step {step} in {self.dir}; available: "
                    f"latest {self.latest.all_steps()}, best {self.best.all_steps()}"
                )
        else:
            raise ValueError(
                f"checkpoint must be 'best', 'latest' or a step number, got {checkpoint!r}"
            )
        if step is None:
            raise FileNotFoundError(
                f"no {checkpoint!r} checkpoint in {self.dir} (a 'best' one is written "
                "after the first completed epoch)"
            )
        return mgr, int(step)


@dataclasses.dataclass
class Run:
    """A trained run, as :func:`load_run` returns it (for evaluate/predict)."""

    config: ml_collections.ConfigDict
    model: Any
    variables: dict
    step: int
    val_metrics: dict
    workdir: Path
    checkpoint: str


def _variables_template(model: Any, image_size: int) -> dict:
    abstract = jax.eval_shape(
        partial(model.init, train=False),
        {"params": jax.random.key(0), "dropout": jax.random.key(1)},
        jnp.zeros((1, image_size, image_size, 3), jnp.float32),
    )
    target = {"params": abstract["params"], "batch_stats": abstract.get("batch_stats", {})}
    return jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), target)


def load_run(workdir: str | Path, checkpoint: str | int = "best") -> Run:
    """Model, variables and validation metrics of a run's ``best``/``latest``/step checkpoint."""
    workdir = Path(workdir).resolve()
    config = cfg.read_run_config(workdir)
    model = build_model(config.model, axis_name=None)
    mgr, step = RunCheckpoints(workdir).resolve(checkpoint)
    r = mgr.restore(
        step,
        args=ocp.args.Composite(
            model=ocp.args.StandardRestore(_variables_template(model, config.data.image_size)),
            meta=ocp.args.JsonRestore(),
        ),
    )
    variables, meta = r["model"], r["meta"]
    return Run(
        config,
        model,
        {"params": variables["params"], "batch_stats": variables["batch_stats"]},
        step,
        dict(meta.get("val_metrics") or {}),
        workdir,
        str(checkpoint),
    )
