"""The paper's Tables I-V: which run and metric fill each cell, computed over seeds, written.

Every table is written as ``<results>/tableN.md`` and ``tableN.csv`` with, for each paper row and
column, the paper's figure | ours (mean +- sample std over seeds) | the seeds used. The paper's
figures are NOT trustworthy (see paper_tables.py); they sit beside ours, never replace them.
Rows whose method is not implemented (model not registered) say so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from aird_jax.experiments import paper_tables
from aird_jax.experiments.cached_eval import Evaluator
from aird_jax.experiments.preflight import check_datasets, check_pretrained
from aird_jax.experiments.runs import (
    BASELINES,
    OURS,
    RGB_ONLY,
    Options,
    RunSpec,
    cutoff_run,
    ensure_trained,
    implemented,
)
from aird_jax.experiments.stats import fmt_mean_std, mean_std
from aird_jax.experiments.table_writer import csv_num, fmt_measured, write_table_files
from aird_jax.models import registered_models

# ------------------------------------------------------------------------ rows of the tables
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
ROMAN = ("I", "II", "III", "IV", "V", "VI")


# ----------------------------------------------------------------------------------- cells
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

    def runs(self) -> list[RunSpec]:
        return [self.run] if self.kind == "metric" else [r for p in self.parts for r in p.runs()]

    def roles(self) -> list[str]:
        return [self.role] if self.kind == "metric" else [r for p in self.parts for r in p.roles()]


def M(run: RunSpec, role: str, metric: str = "auc", degradation: str | None = None) -> Cell:
    """A metric cell."""
    return Cell("metric", run, role, metric, degradation)


def D(a: Cell, b: Cell) -> Cell:
    """A difference cell, a - b per seed."""
    return Cell("diff", parts=(a, b))


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
    """The paper's figures for table ``n`` (Table II also gets the V-B text's figures)."""
    rows = {k: dict(v) for k, v in paper_tables.TABLES[n].rows.items()}
    if n == 2:
        rows["Ours (DFDC Preview)"] = dict(paper_tables.TEXT_V_B["Ours (DFDC Preview)"])
        rows["Ours (DeeperForensics)"] = dict(paper_tables.TEXT_V_B["Ours (DeeperForensics)"])
        best = paper_tables.TEXT_V_B["Best baseline (DFDC Preview / DeeperForensics)"]
        rows["Best baseline (DFDC Preview)"] = dict(best)
        rows["Best baseline (DeeperForensics)"] = dict(best)
    return rows


# -------------------------------------------------------------------------------- computing
@dataclasses.dataclass
class Line:
    """One (row, column) of a written table: the paper's figure and ours per seed."""

    row: str
    column: str
    paper: float | None
    video: list[float] | None = None  # per seed, percent
    frame: list[float] | None = None
    seeds: tuple[int, ...] = ()
    status: str = "ok"  # ok | not implemented | n/a
    unit: str = "%"


def cell_value(cell: Cell, seed: int, level: str, ev: Evaluator, workdirs: dict) -> float:
    """Our value (percent) of ``cell`` for one seed at ``level`` (video | frame)."""
    if cell.kind == "metric":
        res = ev.result(workdirs[(cell.run, seed)], cell.role, cell.degradation)
        return 100.0 * float(res["metrics"][level][cell.metric])
    if cell.kind == "diff":
        a, b = cell.parts
        return cell_value(a, seed, level, ev, workdirs) - cell_value(b, seed, level, ev, workdirs)
    if cell.kind == "best":
        vals = [
            cell_value(p, seed, level, ev, workdirs)
            for p in cell.parts
            if (p.run, seed) in workdirs
        ]
        return max(vals) if vals else float("nan")
    raise ValueError(cell.kind)


def cell_status(cell: Cell, registry: list[str], smoke: bool) -> str:
    """ "ok" when every run the cell needs is registered (for "best": any), else why not."""
    if cell.kind == "none":
        return "n/a"
    found = [implemented(r, registry, smoke) for r in cell.runs()]
    return "ok" if (any(found) if cell.kind == "best" else all(found)) else "not implemented"


def compute_table(n: int, opts: Options, log: Callable[[str], None]) -> list[Line]:
    """Check, train (or reuse) and evaluate what table ``n`` (1..5) needs; one Line per cell."""
    _, _, cells = table_cells(n)
    registry = registered_models()
    runs: list[RunSpec] = []
    roles: set[str] = set()
    for cell in cells.values():
        for r in cell.runs():
            if implemented(r, registry, opts.smoke) and r not in runs:
                runs.append(r)
        roles.update(cell.roles())
    check_datasets(roles, opts, n)
    check_pretrained(runs, opts, n)
    todo = [(r, s) for r in runs for s in opts.seeds]
    workdirs = {
        (r, s): ensure_trained(r, s, opts, log, position=(i, len(todo)))
        for i, (r, s) in enumerate(todo, 1)
    }
    ev = (opts.evaluator_cls or Evaluator)(opts, log)
    paper = paper_rows(n)
    lines: list[Line] = []
    for (row, col), cell in cells.items():
        line = Line(row, col, paper[row].get(col), seeds=opts.seeds)
        line.status = cell_status(cell, registry, opts.smoke)
        if line.status == "ok":
            line.video = [cell_value(cell, s, "video", ev, workdirs) for s in opts.seeds]
            line.frame = [cell_value(cell, s, "frame", ev, workdirs) for s in opts.seeds]
        lines.append(line)
    return lines


# ------------------------------------------------------------------------------- formatting
LEVEL_NOTE = (
    "Ours is reported at VIDEO level (a video's score is the mean of its frames' P(fake), as in "
    "paper IV-B; for image datasets a video is one image) and, for reference, at FRAME level. "
    "Accuracy uses the threshold chosen on each run's own validation set (frame level). The "
    "paper does not say at which level its figures are; its protocol (IV-B) implies video level."
)
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
SMOKE_NOTE = (
    "Smoke mode: configs/late_supcon.py:smoke (efficientnet_tiny, tiny images, a few "
    "steps, native depthwise conv: it compiles faster) on synthetic_upsampling; FF++ "
    "test -> test_indomain, every cross-dataset test -> test_heldout (generator "
    "families unseen in training)."
)
CSV_COLUMNS = (
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
)


def fmt_ours(vals: list[float] | None, status: str, digits: int = 1) -> str:
    return status if vals is None else fmt_mean_std(vals, digits)


def fmt_paper(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def table_header(n: int, opts: Options, extra: str = "") -> list[str]:
    """The lines above table ``n``: title, setting, levels, smoke note, paper caveats."""
    t = paper_tables.TABLES[n]
    mode = " — SMOKE (tiny synthetic stand-in, numbers are meaningless)" if opts.smoke else ""
    out = [f"# Table {ROMAN[n - 1]}: {t.title}{mode}", ""]
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
        out.append(SMOKE_NOTE)
    if extra:
        out.append(extra)
    if t.note:
        out.append(f"Paper note: {t.note}")
    out += [f"> {paper_tables.UNTRUSTWORTHY_NOTE}", ""]
    return out


def _digits(ln: Line) -> int:
    return 3 if ln.unit == "M" else (2 if ln.unit in ("G", "GMAC", "ms") else 1)


def _md_rows(n: int, lines: list[Line], seeds: str) -> list[list[str]]:
    if n == 6:  # one measurement, no seeds
        return [
            [
                ln.row,
                ln.column,
                fmt_paper(ln.paper),
                ln.status if ln.video is None else fmt_measured(ln.video[0], _digits(ln)),
                ln.unit,
            ]
            for ln in lines
        ]
    return [
        [
            ln.row,
            ln.column,
            fmt_paper(ln.paper),
            fmt_ours(ln.video, ln.status),
            fmt_ours(ln.frame, ln.status),
            seeds if ln.video is not None else "—",
        ]
        for ln in lines
    ]


def _csv_row(n: int, ln: Line, seeds: str, smoke: bool) -> list:
    vm, vs = mean_std(ln.video) if ln.video else (None, None)
    fm, fs = mean_std(ln.frame) if ln.frame else (None, None)
    return [
        n,
        ln.row,
        ln.column,
        "" if ln.paper is None else ln.paper,
        csv_num(vm),
        csv_num(vs),
        csv_num(fm),
        csv_num(fs),
        seeds if n != 6 else "",
        " ".join(f"{v:.6f}" for v in (ln.video or [])),
        ln.status,
        ln.unit,
        int(smoke),
    ]


def write_table(
    n: int, lines: list[Line], opts: Options, first: str, second: str, extra_header: str = ""
) -> tuple[Path, Path]:
    """``<results>/tableN.md`` and ``.csv``; returns their paths."""
    seeds = ",".join(map(str, opts.seeds))
    if n == 6:
        md_header = [first, second, "Paper", "Ours (measured)", "Unit"]
    else:
        md_header = [first, second, "Paper", "Ours (video)", "Ours (frame)", "Seeds"]
    return write_table_files(
        opts.results / f"table{n}",
        table_header(n, opts, extra_header),
        md_header,
        _md_rows(n, lines, seeds),
        CSV_COLUMNS,
        [_csv_row(n, ln, seeds, opts.smoke) for ln in lines],
    )
