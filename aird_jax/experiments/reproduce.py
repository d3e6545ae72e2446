"""Regenerate one of the paper's Tables I-VI: train the runs it needs, evaluate, write the table.

  python scripts/reproduce.py --table 3 [--seeds 0 1 2] [--results results/] [--smoke]
  python -m aird_jax.experiments.reproduce --table 3 ...     (the same CLI)

Every table is written as ``<results>/tableN.md`` and ``tableN.csv`` with, for each paper row and
column, the paper's figure | ours (mean +- sample std over seeds) | the seeds used. The paper's
figures are NOT trustworthy (see aird_jax/experiments/paper_tables.py); they sit beside ours,
never replace them. Rows whose method is not implemented say so.

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
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aird_jax import host_memory
from aird_jax.cli import UserError
from aird_jax.cli import run as run_cli
from aird_jax.evaluate import EvaluationError
from aird_jax.experiments import paper_tables
from aird_jax.experiments.cost import compute_table6
from aird_jax.experiments.runs import Options, ReproduceError
from aird_jax.experiments.tables import compute_table, table_cells, write_table

__all__ = ["Options", "ReproduceError", "reproduce", "main", "build_parser", "options_from_args"]


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


def parse_override(s: str) -> tuple[str, Any]:
    """``key=value`` (value parsed as JSON when it is JSON, else kept as a string)."""
    if "=" not in s:
        raise argparse.ArgumentTypeError(f"--set expects key=value, got {s!r}")
    k, v = s.split("=", 1)
    try:
        val = json.loads(v)
    except json.JSONDecodeError:
        val = v
    return k.strip(), val


def build_parser() -> argparse.ArgumentParser:
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
        type=parse_override,
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
    p.add_argument(
        "--progress",
        action="store_true",
        help="progress bars for training steps and evaluation (every run always prints a line "
        "per epoch)",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="echo training output (default: only <run>/train_log.txt; always on without --smoke)",
    )
    return p


def options_from_args(args: argparse.Namespace) -> Options:
    """The run options the parsed command line asks for (smoke: seed 0, results/smoke/)."""
    seeds = tuple(args.seeds) if args.seeds else ((0,) if args.smoke else (0, 1, 2))
    return Options(
        results=Path(args.results or ("results/smoke" if args.smoke else "results")),
        seeds=seeds,
        smoke=args.smoke,
        reevaluate=args.reevaluate,
        overrides=tuple(args.overrides),
        throughput_batch=args.throughput_batch,
        progress=args.progress,
        verbose=args.verbose or not args.smoke,
    )


def main(argv: list[str] | None = None) -> int:
    """The reproduce CLI: build the table, print it; a problem the user must fix ends in one
    ``error: ...`` line and status 2 (``--verbose`` / AIRD_VERBOSE=1 add the traceback)."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.seeds and len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds has duplicates: {list(args.seeds)}")
    opts = options_from_args(args)
    t0 = time.perf_counter()

    def body() -> int:
        try:
            out = reproduce(args.table, opts)
        except (ReproduceError, EvaluationError) as e:
            raise UserError(str(e)) from e
        print()
        print(out["md"].read_text(), end="")
        print(f"\nwrote {out['md']} and {out['csv']} in {time.perf_counter() - t0:.0f}s")
        return 0

    return run_cli(body, argv)


if __name__ == "__main__":
    host_memory.relaunch_under_allocator()  # under tcmalloc where chosen (host_memory.py)
    sys.exit(main())
