"""Regenerate one of the paper's Tables I-VI: train the runs it needs, evaluate, write the table.

  python scripts/reproduce.py --table 3 [--seeds 0 1 2] [--results results/] [--smoke]

Every table is written as ``<results>/tableN.md`` and ``tableN.csv`` with, for each paper row and
column, the paper's figure | ours (mean +- sample std over seeds) | the seeds used. The paper's
figures are NOT trustworthy (see aird_jax/paper_tables.py); they sit beside ours, never replace
them. Rows whose method is not implemented say so.

Runs are trained with ``train.train_and_evaluate`` into ``<results>/runs/<run>_seed<k>``. A finished
run (marker file ``reproduce_run.json`` with the same config) is reused, an interrupted one is
resumed, a folder trained with a DIFFERENT config is an error (never silently mixed). Evaluations
are cached next to the run (``eval/*.json``, keyed by checkpoint step); ``--reevaluate`` redoes
them. Same command again => same numbers (Table VI timings are measurements of this device and
vary a little between runs; parameter and FLOP counts do not).

``--smoke`` runs the same harness end to end at tiny scale on the embedded
``synthetic_upsampling`` dataset (configs/late_supcon.py:smoke): its ``test_indomain`` split stands
in for FF++ test and its ``test_heldout`` split (generator families never seen in training) for
every cross-dataset test. Smoke numbers say nothing about the method; they prove the plumbing.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a clean clone without installing

import numpy as np  # noqa: E402

from aird_jax import paper_tables  # noqa: E402

# --------------------------------------------------------------------------------------------
# What each table needs
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training run (per seed): a method variant of configs/late_supcon.py + overrides."""

    key: str  # folder stem under <results>/runs
    variant: str  # method variant of configs/late_supcon.py
    model_name: str = "detector"  # model registry key; unregistered => "not implemented"
    overrides: tuple[tuple[str, Any], ...] = ()
    # Smoke mode: a small registered stand-in of the same code path (like efficientnet_tiny
    # for the detector), if there is one; and overrides for the paper-scale runs only.
    smoke_model_name: str = ""
    real_overrides: tuple[tuple[str, Any], ...] = ()

    def model_for(self, smoke: bool, registry: set[str]) -> str:
        if smoke and self.smoke_model_name in registry:
            return self.smoke_model_name
        return self.model_name


OURS = RunSpec("late_supcon", "late_supcon")
# The paper's "EfficientNet-B4" baseline is "our RGB stream alone (ablation reference)" (IV-C),
# i.e. the same run as Table III's "RGB Only" (both print 67.2 on Celeb-DF).
RGB_ONLY = RunSpec("rgb_only", "rgb_only")
# Baselines are trained with the same recipe and cross-entropy only (lambda = 0).
BASELINES = {
    "MesoNet": RunSpec(
        "mesonet", "late_fusion", "mesonet", real_overrides=(("model.pretrained", ""),)
    ),
    # The FF++ Xception baseline starts from ImageNet (scripts/port_xception.py writes them).
    "Xception": RunSpec(
        "xception",
        "late_fusion",
        "xception",
        smoke_model_name="xception_tiny",
        real_overrides=(("model.pretrained", "data/weights/legacy_xception.msgpack"),),
    ),
    "F3-Net": RunSpec("f3net", "late_fusion", "f3net"),
    "SPSL": RunSpec("spsl", "late_fusion", "spsl"),
    "Face X-ray": RunSpec("face_xray", "late_fusion", "face_xray"),
}
METHOD_ROWS = {
    **{k: v for k, v in BASELINES.items() if k in ("MesoNet", "Xception")},
    "EfficientNet-B4": RGB_ONLY,
    **{k: v for k, v in BASELINES.items() if k not in ("MesoNet", "Xception")},
    "Ours": OURS,
}
ABLATION_ROWS = {
    "RGB Only": RGB_ONLY,
    "Frequency Only": RunSpec("freq_only", "freq_only"),
    "Both (Early Fusion)": RunSpec("early_fusion", "early_fusion"),
    "Both (Late Fusion)": RunSpec("late_fusion", "late_fusion"),
    "Late + Contrastive": OURS,
}


def cutoff_run(k: int) -> RunSpec:
    if k == 4:
        return OURS  # the default model IS the cutoff-4 run: train it once
    return RunSpec(f"late_supcon_cutoff{k}", "late_supcon", overrides=(("model.dct_cutoff", k),))


CUTOFF_ROWS = {"2 (keep most)": 2, "3": 3, "4 (ours)": 4, "5": 5, "6 (aggressive)": 6}
DEGRADATION_ROWS = {
    "None": None,
    "Blur (sigma=2)": "blur2",
    "Blur (sigma=3)": "blur3",
    "JPEG (Q=70)": "jpeg70",
    "JPEG (Q=50)": "jpeg50",
    "Blur + JPEG": "blur_jpeg",
    "JPEG (Q=20) [text, VI-B]": "jpeg20",
}


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


@dataclasses.dataclass(frozen=True)
class Cell:
    """How to compute our value for one (row, column) of a table.

    kind "metric": metric of ``run`` evaluated on ``role`` (+ ``degradation``).
    kind "diff": metric(a) - metric(b), per seed (the paper's Drop and Delta columns).
    kind "best": the max over several cells, per seed (the text's "best baseline").
    kind "none": nothing to compute (e.g. the em dash of Table III's reference row).
    """

    kind: str
    run: RunSpec | None = None
    role: str = ""
    metric: str = "auc"  # auc | acc | eer
    degradation: str | None = None
    parts: tuple[Cell, ...] = ()


def M(run: RunSpec, role: str, metric: str = "auc", degradation: str | None = None) -> Cell:
    return Cell("metric", run, role, metric, degradation)


def D(a: Cell, b: Cell) -> Cell:
    return Cell("diff", parts=(a, b))


LEVEL_NOTE = (
    "Ours is reported at VIDEO level (a video's score is the mean of its frames' P(fake), as in "
    "paper IV-B; for image datasets a video is one image) and, for reference, at FRAME level. "
    "Accuracy uses the threshold chosen on each run's own validation set (frame level). The "
    "paper does not say at which level its figures are; its protocol (IV-B) implies video level."
)


def table_cells(n: int) -> tuple[str, str, dict[tuple[str, str], Cell]]:
    """(first-column name, second-column name, {(row, column): Cell}) for table ``n``."""
    cells: dict[tuple[str, str], Cell] = {}
    if n == 1:
        for row, run in METHOD_ROWS.items():
            for col, metric in (("AUC", "auc"), ("Acc", "acc"), ("EER", "eer")):
                cells[(row, col)] = M(run, "indomain", metric)
        return "Method", "Metric", cells
    if n == 2:
        for row, run in METHOD_ROWS.items():
            cells[(row, "AUC")] = M(run, "celebdf")
            cells[(row, "Acc")] = M(run, "celebdf", "acc")
            cells[(row, "Drop")] = D(M(run, "celebdf"), M(run, "indomain"))
        cells[("Ours (DFDC Preview)", "AUC")] = M(OURS, "dfdc")
        cells[("Ours (DeeperForensics)", "AUC")] = M(OURS, "deeperforensics")
        others = [r for k, r in METHOD_ROWS.items() if k != "Ours"]
        for role, name in (("dfdc", "DFDC Preview"), ("deeperforensics", "DeeperForensics")):
            cells[(f"Best baseline ({name})", "AUC")] = Cell(
                "best", parts=tuple(M(r, role) for r in others)
            )
        return "Method", "Metric", cells
    if n == 3:
        for row, run in ABLATION_ROWS.items():
            cells[(row, "AUC")] = M(run, "celebdf")
            cells[(row, "Delta")] = (
                Cell("none") if run is OURS else D(M(run, "celebdf"), M(OURS, "celebdf"))
            )
        return "Configuration", "Metric", cells
    if n == 4:
        for row, k in CUTOFF_ROWS.items():
            cells[(row, "FF++ AUC")] = M(cutoff_run(k), "indomain")
            cells[(row, "Celeb-DF AUC")] = M(cutoff_run(k), "celebdf")
        return "Cutoff", "Metric", cells
    if n == 5:
        for row, deg in DEGRADATION_ROWS.items():
            cells[(row, "Xception")] = M(BASELINES["Xception"], "celebdf", degradation=deg)
            cells[(row, "Ours")] = M(OURS, "celebdf", degradation=deg)
        return "Degradation", "Method", cells
    raise ValueError(f"table {n} has no trained cells")


def paper_rows(n: int) -> dict[str, dict[str, float | None]]:
    rows = {k: dict(v) for k, v in paper_tables.TABLES[n].rows.items()}
    if n == 2:
        rows["Ours (DFDC Preview)"] = dict(paper_tables.TEXT_V_B["Ours (DFDC Preview)"])
        rows["Ours (DeeperForensics)"] = dict(paper_tables.TEXT_V_B["Ours (DeeperForensics)"])
        best = paper_tables.TEXT_V_B["Best baseline (DFDC Preview / DeeperForensics)"]
        rows["Best baseline (DFDC Preview)"] = dict(best)
        rows["Best baseline (DeeperForensics)"] = dict(best)
    return rows


TABLE_HEADERS = {
    1: "Trained on FF++ c23 train, tested on FF++ c23 test.",
    2: "Trained on FF++ c23, tested without adaptation on Celeb-DF v2 test (and DFDC Preview, "
    "DeeperForensics as in the V-B text). Drop = Celeb-DF AUC - FF++ AUC (Table I), per seed. "
    "'Best baseline' = the best implemented baseline (EfficientNet-B4 RGB stream, MesoNet, "
    "Xception when registered).",
    3: "Celeb-DF v2 test AUC of models trained on FF++ c23. Delta = row AUC - 'Late + "
    "Contrastive' AUC, per seed. RGB/Frequency Only, Early and Late Fusion are trained with "
    "cross-entropy only (lambda = 0): the paper adds contrastive learning only in the last row.",
    4: "The full method (late fusion + SupCon) with DCT high-pass cutoff k (top-left k x k of "
    "each 8 x 8 block zeroed); cutoff 4 is the main run.",
    5: "Celeb-DF v2 test AUC of the FF++-trained models; each test image is degraded before "
    "preprocessing (aird_jax/data/degrade.py; 'Blur + JPEG' = blur sigma 2 then JPEG Q50, our "
    "choice: the paper does not define it).",
}


# --------------------------------------------------------------------------------------------
# Model registry, configs, runs
# --------------------------------------------------------------------------------------------


def registered_models() -> set[str]:
    """Names the model registry can build (baselines may be registered by others later)."""
    from aird_jax import models

    for attr in ("registered_models", "available_models", "list_models"):
        fn = getattr(models, attr, None)
        if callable(fn):
            return set(fn())
    for attr in ("MODEL_REGISTRY", "REGISTRY", "MODELS", "_REGISTRY"):
        reg = getattr(models, attr, None)
        if isinstance(reg, dict):
            return set(reg)
    return {"detector"}


def implemented(run: RunSpec, registry: set[str], smoke: bool = False) -> bool:
    return run.model_for(smoke, registry) in registry


def load_config_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_aird_late_supcon", ROOT / "configs" / "late_supcon.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _set_path(cfg, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    with node.unlocked() if hasattr(node, "unlocked") else _nullcontext():
        node[leaf] = value


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


# Smoke runs take a few steps, so XLA compile time dominates them: the native grouped
# depthwise conv compiles ~2x faster on CPU than the "shifted" form "auto" picks there for speed.
SMOKE_OVERRIDES: tuple[tuple[str, Any], ...] = (("model.depthwise", "native"),)


def run_config(run: RunSpec, seed: int, smoke: bool, extra: Sequence[tuple[str, Any]] = ()):
    mod = load_config_module()
    cfg = mod.get_config(f"smoke,{run.variant}" if smoke else run.variant)
    cfg.seed = int(seed)
    cfg.model.name = run.model_for(smoke, registered_models())
    mode = SMOKE_OVERRIDES if smoke else run.real_overrides
    for k, v in (*mode, *run.overrides, *extra):
        _set_path(cfg, k, v)
    if hasattr(cfg, "train") and "progress" in cfg.train:
        cfg.train.progress = False  # the harness prints its own one line per run
    return cfg


def _config_fingerprint(cfg) -> dict:
    d = json.loads(cfg.to_json_best_effort(sort_keys=True))
    d.get("train", {}).pop("progress", None)  # cosmetic; must not invalidate a finished run
    return d


class ReproduceError(RuntimeError):
    """Something the user must fix; the message says what."""


def ensure_trained(run: RunSpec, seed: int, opts: Options, log: Callable[[str], None]) -> Path:
    """Train (or reuse / resume) ``run`` for ``seed``; returns its workdir."""
    from aird_jax import train

    workdir = opts.results / "runs" / f"{run.key}_seed{seed}"
    cfg = run_config(run, seed, opts.smoke, opts.overrides)
    fp = _config_fingerprint(cfg)
    marker = workdir / "reproduce_run.json"
    if marker.exists():
        done = json.loads(marker.read_text())
        if done.get("config") != fp:
            raise ReproduceError(
                f"{workdir} holds a run trained with a different config than this command "
                f"needs ({run.key}, seed {seed}). Delete that folder or use another --results."
            )
        log(f"  reuse   {workdir.relative_to(opts.results)} (finished)")
        return workdir
    state = "resume " if workdir.exists() else "train  "
    log(f"  {state} {workdir.relative_to(opts.results)} ...")
    t0 = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "train_log.txt"
    with (
        log_path.open("a") as f,
        contextlib.redirect_stdout(_Tee(f, sys.stdout if opts.verbose else None)),
    ):
        try:
            summary = (opts.trainer or train.train_and_evaluate)(cfg, str(workdir))
        except BaseException:
            log(f"          FAILED; training output is in {log_path}")
            raise
    marker.write_text(
        json.dumps({"config": fp, "summary": summary}, indent=2, sort_keys=True, default=_jsonable)
    )
    log(f"          done in {time.perf_counter() - t0:.0f}s")
    return workdir


class _Tee:
    """File-like: training output goes to the run's log file, and optionally to the console."""

    def __init__(self, *streams):
        self.streams = [s for s in streams if s is not None]

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, os.PathLike):
        return str(v)
    if hasattr(v, "item") and getattr(v, "shape", None) == ():
        return v.item()
    return str(v)


@dataclasses.dataclass
class Options:
    results: Path
    seeds: tuple[int, ...]
    smoke: bool
    reevaluate: bool = False
    overrides: tuple[tuple[str, Any], ...] = ()
    throughput_batch: int = 0
    progress: bool = False
    verbose: bool = False  # echo the training output (always kept in <run>/train_log.txt)
    # Injection points (tests): fn(config, workdir) -> summary; an Evaluator-like class.
    trainer: Callable[[Any, str], dict] | None = None
    evaluator_cls: type | None = None


def target_of(role: str, smoke: bool) -> tuple[str, str, str]:
    t = TARGETS[role]
    return t.smoke if smoke else t.real


class Evaluator:
    """Evaluates (run, seed, role, degradation) once, caching results next to the run."""

    def __init__(self, opts: Options, log: Callable[[str], None]):
        self.opts, self.log = opts, log
        self._runs: dict[Path, Any] = {}
        self._results: dict[tuple, dict] = {}

    def _run(self, workdir: Path):
        from aird_jax import evaluate as ev

        if workdir not in self._runs:
            self._runs.clear()  # one model in memory at a time
            self._runs[workdir] = ev.load_run_or_explain(workdir, "best")
        return self._runs[workdir]

    def result(self, workdir: Path, role: str, degradation: str | None) -> dict:
        from aird_jax import evaluate as ev

        key = (workdir, role, degradation)
        if key in self._results:
            return self._results[key]
        name, config, split = target_of(role, self.opts.smoke)
        run = self._run(workdir)
        data_cfg = ev.eval_data_config(run.config, name, config)
        if self.opts.smoke:
            with data_cfg.unlocked():
                data_cfg.max_examples = run.config.data.max_examples  # tiny in smoke mode
        out_dir = workdir / "eval"
        cache = out_dir / f"{ev.result_stem(data_cfg, split, degradation, None, run.step)}.json"
        res = None
        if cache.exists() and not self.opts.reevaluate:
            res = json.loads(cache.read_text())
            if res.get("results_version") != ev.RESULTS_VERSION:
                res = None
        if res is None:
            res = ev.evaluate_run(
                workdir,
                data_cfg,
                split,
                degradation,
                "best",
                run=run,
                output_dir=out_dir,
                batch_size=int(run.config.train.eval_batch_size),
                progress=self.opts.progress,
            )
            self.log(
                f"  eval    {workdir.name} on {name}:{split}"
                + (f" +{degradation}" if degradation else "")
                + f": video AUC {100 * res['metrics']['video']['auc']:.2f}%"
            )
        self._results[key] = res
        return res


# --------------------------------------------------------------------------------------------
# Computing and formatting the tables
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Line:
    row: str
    column: str
    paper: float | None
    video: list[float] | None = None  # per seed, percent
    frame: list[float] | None = None
    seeds: tuple[int, ...] = ()
    status: str = "ok"  # ok | not implemented | n/a
    unit: str = "%"


def _cell_values(cell: Cell, seed: int, level: str, ev: Evaluator, workdirs: dict) -> float:
    if cell.kind == "metric":
        res = ev.result(workdirs[(cell.run, seed)], cell.role, cell.degradation)
        return 100.0 * float(res["metrics"][level][cell.metric])
    if cell.kind == "diff":
        a, b = cell.parts
        return _cell_values(a, seed, level, ev, workdirs) - _cell_values(
            b, seed, level, ev, workdirs
        )
    if cell.kind == "best":
        vals = [
            _cell_values(p, seed, level, ev, workdirs)
            for p in cell.parts
            if (p.run, seed) in workdirs
        ]
        return max(vals) if vals else float("nan")
    raise ValueError(cell.kind)


def _cell_runs(cell: Cell) -> list[RunSpec]:
    if cell.kind == "metric":
        return [cell.run]
    return [r for p in cell.parts for r in _cell_runs(p)]


def _cell_roles(cell: Cell) -> list[str]:
    if cell.kind == "metric":
        return [cell.role]
    return [r for p in cell.parts for r in _cell_roles(p)]


def check_datasets(roles: set[str], opts: Options, n: int) -> None:
    """Fail BEFORE hours of training when a dataset the table needs is missing."""
    from aird_jax.data import pipeline

    mod = load_config_module()
    base = mod.get_config("smoke" if opts.smoke else None)
    needed = [
        (*TRAIN_TARGET["smoke" if opts.smoke else "real"], base.data.train_split),
        (*TRAIN_TARGET["smoke" if opts.smoke else "real"], base.data.val_split),
    ]
    needed += [target_of(r, opts.smoke) for r in sorted(roles)]
    seen = set()
    for name, config, split in needed:
        if (name, config, split) in seen:
            continue
        seen.add((name, config, split))
        data_cfg = base.data.copy_and_resolve_references()
        with data_cfg.unlocked():
            data_cfg.name, data_cfg.config, data_cfg.manual_dir = name, config, ""
        for k, v in opts.overrides:
            if k.startswith("data."):
                _set_path(data_cfg, k[len("data.") :], v)
        try:
            pipeline.num_examples(data_cfg, split)
        except (FileNotFoundError, ValueError, ModuleNotFoundError) as e:
            # Missing download / split / builder. Anything else is a bug and propagates.
            what = f"{name}" + (f"/{config}" if config else "") + f" (split {split!r})"
            if opts.smoke:
                raise ReproduceError(
                    f"Table {n} (smoke) needs the embedded dataset {what}, which failed to "
                    f"build:\n  {e}"
                ) from e
            raise ReproduceError(
                f"Table {n} needs dataset {what}, which is not available:\n  {e}\n"
                "Download it (see data/README.md for where each dataset comes from and where it "
                "goes: <data root>/manual/<name>, data root = $AIRD_DATA_DIR or data/), or run "
                "with --smoke to exercise the harness on the embedded synthetic dataset."
            ) from e


def check_pretrained(runs: Sequence[RunSpec], opts: Options, n: int) -> None:
    """Fail before training when a run needs ported ImageNet weights that are not there."""
    from aird_jax import models

    for r in runs:
        cfg = run_config(r, opts.seeds[0], opts.smoke, opts.overrides)
        path = cfg.model.get("pretrained", "")
        if path and not Path(path).is_file():
            hint = getattr(models, "port_command", None)
            cmd = hint(cfg.model) if callable(hint) else "python scripts/port_weights.py --help"
            raise ReproduceError(
                f"Table {n} trains {r.key} from ImageNet weights {path} (relative to the current "
                f"directory: run from the repository root), which do not exist. Create them "
                f"with:\n  {cmd}\nor pass --set model.pretrained=PATH."
            )


def compute_table(n: int, opts: Options, log: Callable[[str], None]) -> list[Line]:
    first, second, cells = table_cells(n)
    registry = registered_models()
    runs: list[RunSpec] = []
    roles: set[str] = set()
    for cell in cells.values():
        for r in _cell_runs(cell):
            if implemented(r, registry, opts.smoke) and r not in runs:
                runs.append(r)
        roles.update(_cell_roles(cell))
    check_datasets(roles, opts, n)
    check_pretrained(runs, opts, n)
    workdirs: dict[tuple[RunSpec, int], Path] = {}
    for r in runs:
        for s in opts.seeds:
            workdirs[(r, s)] = ensure_trained(r, s, opts, log)
    ev = (opts.evaluator_cls or Evaluator)(opts, log)
    paper = paper_rows(n)
    lines: list[Line] = []
    for (row, col), cell in cells.items():
        line = Line(row, col, paper[row].get(col), seeds=opts.seeds)
        needed = _cell_runs(cell)
        if cell.kind == "none":
            line.status = "n/a"
        elif cell.kind == "best" and not any(implemented(r, registry, opts.smoke) for r in needed):
            line.status = "not implemented"
        elif cell.kind != "best" and not all(implemented(r, registry, opts.smoke) for r in needed):
            line.status = "not implemented"
        else:
            line.video = [_cell_values(cell, s, "video", ev, workdirs) for s in opts.seeds]
            line.frame = [_cell_values(cell, s, "frame", ev, workdirs) for s in opts.seeds]
        lines.append(line)
    return lines


def _mean_std(vals: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(vals, dtype=np.float64)
    return float(a.mean()), (float(a.std(ddof=1)) if a.size > 1 else float("nan"))


def fmt_ours(vals: Sequence[float] | None, status: str, digits: int = 1) -> str:
    if vals is None:
        return status
    m, s = _mean_std(vals)
    if not math.isfinite(m):
        return "nan"
    return f"{m:.{digits}f}" if not math.isfinite(s) else f"{m:.{digits}f} ± {s:.{digits}f}"


def fmt_paper(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def table_header(n: int, opts: Options, extra: str = "") -> list[str]:
    t = paper_tables.TABLES[n]
    mode = " — SMOKE (tiny synthetic stand-in, numbers are meaningless)" if opts.smoke else ""
    out = [f"# Table {['I', 'II', 'III', 'IV', 'V', 'VI'][n - 1]}: {t.title}{mode}", ""]
    if n in TABLE_HEADERS:
        out.append(
            ("Paper setting (replaced by stand-ins in smoke mode, below): " if opts.smoke else "")
            + TABLE_HEADERS[n]
        )
    if n != 6:
        out.append(
            f"Levels: {LEVEL_NOTE} Values in %; ours = mean ± sample std over seeds "
            f"{', '.join(map(str, opts.seeds))}."
        )
    if opts.smoke:
        out.append(
            "Smoke mode: configs/late_supcon.py:smoke (efficientnet_tiny, tiny images, a few "
            "steps, native depthwise conv: it compiles faster) on synthetic_upsampling; FF++ "
            "test -> test_indomain, every cross-dataset test -> test_heldout (generator "
            "families unseen in training)."
        )
    if extra:
        out.append(extra)
    if t.note:
        out.append(f"Paper note: {t.note}")
    out += [f"> {paper_tables.UNTRUSTWORTHY_NOTE}", ""]
    return out


def write_table(
    n: int, lines: list[Line], opts: Options, first: str, second: str, extra_header: str = ""
) -> tuple[Path, Path]:
    opts.results.mkdir(parents=True, exist_ok=True)
    md = table_header(n, opts, extra_header)
    seeds = ",".join(map(str, opts.seeds))
    if n == 6:
        md += [f"| {first} | {second} | Paper | Ours (measured) | Unit |", "|---|---|---|---|---|"]
        for ln in lines:
            ours = ln.status if ln.video is None else f"{ln.video[0]:.{_digits(ln)}f}"
            md.append(f"| {ln.row} | {ln.column} | {fmt_paper(ln.paper)} | {ours} | {ln.unit} |")
    else:
        md += [
            f"| {first} | {second} | Paper | Ours (video) | Ours (frame) | Seeds |",
            "|---|---|---|---|---|---|",
        ]
        for ln in lines:
            md.append(
                f"| {ln.row} | {ln.column} | {fmt_paper(ln.paper)} | "
                f"{fmt_ours(ln.video, ln.status)} | {fmt_ours(ln.frame, ln.status)} | "
                f"{seeds if ln.video is not None else '—'} |"
            )
    md_path = opts.results / f"table{n}.md"
    md_path.write_text("\n".join(md) + "\n")
    csv_path = opts.results / f"table{n}.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "table",
                "row",
                "column",
                "paper",
                "ours_video_mean",
                "ours_video_std",
                "ours_frame_mean",
                "ours_frame_std",
                "seeds",
                "per_seed_video",
                "status",
                "unit",
                "smoke",
            ]
        )
        for ln in lines:
            vm, vs = _mean_std(ln.video) if ln.video else (None, None)
            fm, fs = _mean_std(ln.frame) if ln.frame else (None, None)
            w.writerow(
                [
                    n,
                    ln.row,
                    ln.column,
                    "" if ln.paper is None else ln.paper,
                    _num(vm),
                    _num(vs),
                    _num(fm),
                    _num(fs),
                    seeds if n != 6 else "",
                    " ".join(f"{v:.6f}" for v in (ln.video or [])),
                    ln.status,
                    ln.unit,
                    int(opts.smoke),
                ]
            )
    return md_path, csv_path


def _num(v: float | None) -> str:
    return "" if v is None or not math.isfinite(v) else f"{v:.6f}"


def _digits(ln: Line) -> int:
    return 3 if ln.unit == "M" else (2 if ln.unit in ("G", "GMAC", "ms") else 1)


# --------------------------------------------------------------------------------------------
# Table VI: measured cost
# --------------------------------------------------------------------------------------------

TABLE6_ROWS = {
    "MesoNet": BASELINES["MesoNet"],
    "Xception": BASELINES["Xception"],
    "F3-Net": BASELINES["F3-Net"],
    "Ours": OURS,
}


def compute_table6(opts: Options, log: Callable[[str], None]) -> tuple[list[Line], str]:
    import jax

    from aird_jax import evaluate as ev

    registry = registered_models()
    dev = jax.devices()[0]
    on_cpu = dev.platform == "cpu"
    batch = opts.throughput_batch or (8 if opts.smoke else (32 if on_cpu else 256))
    repeats = 3 if opts.smoke else 20
    # The paper's setting is 224 px; smoke mode measures at the smoke image size (plumbing only).
    size = int(run_config(OURS, 0, True).data.image_size) if opts.smoke else 224
    lines: list[Line] = []
    for row, spec in TABLE6_ROWS.items():
        name = spec.model_for(opts.smoke, registry)
        paper = paper_tables.TABLE_VI.rows[row]
        cols = [
            ("Params (M)", "M"),
            ("FLOPs (G)", "G"),
            ("MACs (G) = XLA FLOPs / 2", "GMAC"),
            ("Latency (ms)", "ms"),
            (f"Throughput (img/s, batch {batch})", "img/s"),
        ]
        if name not in registry:
            for col, unit in cols:
                lines.append(Line(row, col, paper.get(col), status="not implemented", unit=unit))
            continue
        cfg = run_config(spec, 0, opts.smoke, opts.overrides)
        what = f"{name}, {cfg.model.backbone}" if name == "detector" else name
        log(f"  measure {row} ({what}) at {size} px ...")
        m = ev.measure_cost(cfg.model, image_size=size, throughput_batch=batch, repeats=repeats)
        vals = {
            "M": m["params"] / 1e6,
            "G": m["flops"] / 1e9,
            "GMAC": m["flops"] / 2e9,
            "ms": m["latency_ms"],
            "img/s": m["throughput"],
        }
        for col, unit in cols:
            lines.append(Line(row, col, paper.get(col), video=[vals[unit]], unit=unit))
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
    if opts.smoke:
        note += (
            f" SMOKE: the tiny smoke model (not EfficientNet-B4) at {size} px, not 224; "
            "baselines at the same size (Xception as xception_tiny when registered)."
        )
    return lines, note


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def reproduce(n: int, opts: Options, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build table ``n``; returns {"md": path, "csv": path, "lines": [...]}."""
    if n not in paper_tables.TABLES:
        raise ReproduceError(f"--table must be 1..6, got {n}")
    log(
        f"Table {n}: {paper_tables.TABLES[n].title}"
        + (" [smoke]" if opts.smoke else "")
        + f" -> {opts.results}"
    )
    if n == 6:
        lines, note = compute_table6(opts, log)
        md, csv_path = write_table(6, lines, opts, "Method", "Quantity", note)
    else:
        first, second, _ = table_cells(n)
        lines = compute_table(n, opts, log)
        md, csv_path = write_table(n, lines, opts, first, second)
    return {"md": md, "csv": csv_path, "lines": lines}


def _parse_override(s: str) -> tuple[str, Any]:
    if "=" not in s:
        raise argparse.ArgumentTypeError(f"--set expects key=value, got {s!r}")
    k, v = s.split("=", 1)
    try:
        val = json.loads(v)
    except json.JSONDecodeError:
        val = v
    return k.strip(), val


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--table", type=int, required=True, choices=range(1, 7), metavar="N", help="1..6"
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="training seeds (default 0 1 2; smoke: 0)",
    )
    p.add_argument(
        "--results", default=None, help="results folder (default results/, smoke: results/smoke/)"
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny end-to-end run on the embedded synthetic dataset (CPU, minutes)",
    )
    p.add_argument("--reevaluate", action="store_true", help="ignore cached evaluations")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        type=_parse_override,
        default=[],
        metavar="KEY=VALUE",
        help="config override for every run, e.g. --set data.root=/data (part of the run identity)",
    )
    p.add_argument(
        "--throughput-batch",
        type=int,
        default=0,
        help="Table VI batch for throughput (default 256 on GPU, 32 on CPU, smoke 8)",
    )
    p.add_argument("--progress", action="store_true", help="progress bars for evaluation")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="echo training output (default: only <run>/train_log.txt; always on without --smoke)",
    )
    args = p.parse_args(argv)
    seeds = tuple(args.seeds) if args.seeds else ((0,) if args.smoke else (0, 1, 2))
    if len(set(seeds)) != len(seeds):
        p.error(f"--seeds has duplicates: {list(seeds)}")
    results = Path(args.results or ("results/smoke" if args.smoke else "results"))
    opts = Options(
        results=results,
        seeds=seeds,
        smoke=args.smoke,
        reevaluate=args.reevaluate,
        overrides=tuple(args.overrides),
        throughput_batch=args.throughput_batch,
        progress=args.progress,
        verbose=args.verbose or not args.smoke,
    )
    t0 = time.perf_counter()
    try:
        out = reproduce(args.table, opts)
    except ReproduceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from aird_jax.evaluate import EvaluationError

        if isinstance(e, EvaluationError):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise
    print()
    print(out["md"].read_text(), end="")
    print(f"\nwrote {out['md']} and {out['csv']} in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
