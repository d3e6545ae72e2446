"""Evaluations of trained runs, cached next to each run, and the datasets the tables test on.

A cached result is ``<run>/eval[/<tag>]/<result stem>.json`` (keyed by dataset, split,
degradation and checkpoint step); it is reused unless ``reevaluate`` or its layout version is old.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aird_jax import evaluate as ev
from aird_jax.experiments.runs import Options


@dataclasses.dataclass(frozen=True)
class EvalTarget:
    """Where a role ("indomain", "celebdf", ...) points in real and in smoke mode."""

    real: tuple[str, str, str]  # dataset, builder config, split
    smoke: tuple[str, str, str]
    label: str


TARGETS = {
    "indomain": EvalTarget(
        ("ffpp", "c23", "test"), ("synthetic_upsampling", "", "test_indomain"), "FF++ c23 test"
    ),
    "celebdf": EvalTarget(
        ("celeb_df_v2", "", "test"),
        ("synthetic_upsampling", "", "test_heldout"),
        "Celeb-DF v2 test",
    ),
    "dfdc": EvalTarget(
        ("dfdc_preview", "", "test"),
        ("synthetic_upsampling", "", "test_heldout"),
        "DFDC Preview test",
    ),
    "deeperforensics": EvalTarget(
        ("deeper_forensics", "", "test"),
        ("synthetic_upsampling", "", "test_heldout"),
        "DeeperForensics test",
    ),
}
TRAIN_TARGET = {"real": ("ffpp", "c23"), "smoke": ("synthetic_upsampling", "")}


def target_of(role: str, smoke: bool) -> tuple[str, str, str]:
    t = TARGETS[role]
    return t.smoke if smoke else t.real


def cached_evaluation(
    workdir: Path,
    run: Any,
    data_cfg: Any,
    split: str,
    degradation: str | None,
    out_dir: Path,
    reevaluate: bool = False,
    progress: bool = False,
) -> tuple[dict, bool]:
    """(result, computed now?) of the best checkpoint of ``run`` on ``data_cfg``/``split``."""
    stem = ev.result_stem(data_cfg, split, degradation, None, run.step)
    cache = out_dir / f"{stem}.json"
    if cache.exists() and not reevaluate:
        res = json.loads(cache.read_text())
        if res.get("results_version") == ev.RESULTS_VERSION:
            return res, False
    res = ev.evaluate_run(
        workdir,
        data_cfg,
        split=split,
        degradation=degradation,
        checkpoint="best",
        run=run,
        output_dir=out_dir,
        batch_size=int(run.config.train.eval_batch_size),
        progress=progress,
    )
    return res, True


class Evaluator:
    """Evaluates (run, seed, role, degradation) once, caching results next to the run."""

    def __init__(self, opts: Options, log: Callable[[str], None]):
        self.opts, self.log = opts, log
        self._runs: dict[Path, Any] = {}
        self._results: dict[tuple, dict] = {}

    def _run(self, workdir: Path):
        if workdir not in self._runs:
            self._runs.clear()  # one model in memory at a time
            self._runs[workdir] = ev.load_run_or_explain(workdir, "best")
        return self._runs[workdir]

    def result(self, workdir: Path, role: str, degradation: str | None) -> dict:
        key = (workdir, role, degradation)
        if key in self._results:
            return self._results[key]
        name, config, split = target_of(role, self.opts.smoke)
        run = self._run(workdir)
        data_cfg = ev.eval_data_config(run.config, name, config)
        if self.opts.smoke:
            with data_cfg.unlocked():
                data_cfg.max_examples = run.config.data.max_examples  # tiny in smoke mode
        res, fresh = cached_evaluation(
            workdir,
            run,
            data_cfg,
            split,
            degradation,
            workdir / "eval",
            self.opts.reevaluate,
            self.opts.progress,
        )
        if fresh:
            self.log(
                f"  eval    {workdir.name} on {name}:{split}"
                + (f" +{degradation}" if degradation else "")
                + f": video AUC {100 * res['metrics']['video']['auc']:.2f}%"
            )
        self._results[key] = res
        return res
