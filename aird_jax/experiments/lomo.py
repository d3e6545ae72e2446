"""Leave-one-method-out (LOMO) on a face folder: train on three FF++ methods, test on the fourth.

  python scripts/leave_one_method_out.py --faces ../shared/data/ffpp_faces299 \
      --holdout NeuralTextures [--variants late_supcon,rgb_only,freq_only] [--seeds 0] \
      [--image-size 64] [--epochs 6] [--results results/lomo]
  python -m aird_jax.experiments.lomo ...     (the same CLI)

The in-repo stand-in for cross-manipulation generalisation. For each variant (and seed): train
on the face folder's ``train`` split restricted (``data.methods``) to the reals and the OTHER
methods, keep the best checkpoint by validation AUC (``val`` carved from ``train``, the same
methods), then score the ``test`` split twice: reals + the seen methods, and reals + the
held-out method. Writes ``<results>/<holdout>.md`` and ``.csv``.

Scale: configs/late_supcon.py:quickstart (tiny EfficientNet, RANDOM init -- no ImageNet
weights exist for it, and the B4 ones are not available here --, small images, a few short
epochs) pointed at the face folder. These numbers say how the method variants compare at that
scale; they are not the paper's setting. Runs are reused/resumed as in experiments/runs.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aird_jax import evaluate as ev
from aird_jax import host_memory
from aird_jax.cli import UserError
from aird_jax.cli import run as run_cli
from aird_jax.config import load_config
from aird_jax.data import index
from aird_jax.experiments.cached_eval import cached_evaluation
from aird_jax.experiments.runs import (
    MARKER,
    Options,
    ReproduceError,
    RunSpec,
    ensure_trained,
    method_variants,
    private_data_root,
    run_config,
)
from aird_jax.experiments.stats import bootstrap_result_auc_ci, fmt_mean_std
from aird_jax.experiments.table_writer import write_table_files

DEFAULT_VARIANTS = ("late_supcon", "rgb_only", "freq_only")
# Per-seed lists of a variant's row (one entry per seed, in seed order).
PER_SEED = (
    *("seen_auc", "heldout_auc", "seen_eer", "heldout_eer", "seen_acc", "heldout_acc"),
    *("n_seen", "n_heldout", "val_auc", "step", "train_s", "seen_ci", "heldout_ci"),
)


@dataclasses.dataclass
class LomoOptions:
    """One leave-one-method-out study (the CLI flags)."""

    faces: Path
    holdout: str
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    seeds: tuple[int, ...] = (0,)
    image_size: int = 64
    epochs: int = 6
    steps_per_epoch: int = 30
    depthwise: str = "auto"
    lr: float | None = None
    backbone_lr_mult: float | None = None
    results: Path = Path("results/lomo")
    reevaluate: bool = False
    verbose: bool = False


def seen_methods(all_methods: list[str], holdout: str) -> list[str]:
    """The methods trained on: all but ``holdout`` (which must be one of them)."""
    if holdout not in all_methods:
        raise ReproduceError(
            f"--holdout {holdout!r} is not a fake method of the face folder; it has {all_methods}."
        )
    seen = [m for m in all_methods if m != holdout]
    if not seen:
        raise ReproduceError(f"Holding out {holdout!r} leaves no method to train on.")
    return seen


def data_overrides(lo: LomoOptions, faces: Path, data_root: Path, seen: list[str]) -> tuple:
    """Config overrides pointing the quickstart config at the face folder's seen methods."""
    return (
        ("data.name", "face_folder"),
        ("data.config", ""),
        ("data.root", str(data_root)),
        ("data.manual_dir", str(faces)),
        ("data.methods", ",".join(seen)),
        ("data.image_size", int(lo.image_size)),
        ("data.frames_per_video", 0),  # still images: every image is its own one-frame video
        ("train.epochs", int(lo.epochs)),
        ("train.steps_per_epoch", int(lo.steps_per_epoch)),
        ("model.depthwise", lo.depthwise),
    ) + tuple(
        (k, v)
        for k, v in (("optim.lr", lo.lr), ("optim.backbone_lr_mult", lo.backbone_lr_mult))
        if v is not None  # unset: the quickstart (= paper) optimiser
    )


def evaluate_subset(workdir: Path, run, methods: list[str], tag: str, reevaluate: bool) -> dict:
    """Test split restricted to reals + ``methods``; cached in <run>/eval/<tag>/."""
    data_cfg = ev.eval_data_config(run.config, None, None, methods=",".join(methods))
    res, _ = cached_evaluation(
        workdir, run, data_cfg, "test", None, workdir / "eval" / tag, reevaluate
    )
    return res


def face_folder_methods(faces: Path, data_root: Path) -> list[str]:
    """The fake methods of the face folder ``faces`` (built under ``data_root``)."""
    probe = load_config("configs/late_supcon.py").data
    probe.name, probe.config = "face_folder", ""
    probe.root, probe.manual_dir = str(data_root), str(faces)
    return index.dataset_methods(index.prepared_builder(probe))


def _train_seconds(workdir: Path, t0: float) -> float:
    """Wall time of training, recorded with the run the first time (reused runs keep theirs)."""
    marker = json.loads((workdir / MARKER).read_text())
    if marker.get("train_seconds") is None:  # trained now: record the wall time with the run
        marker["train_seconds"] = time.perf_counter() - t0
        (workdir / MARKER).write_text(json.dumps(marker, indent=2))
    return float(marker["train_seconds"])


def _seed_results(
    spec: RunSpec, seed: int, lo: LomoOptions, opts: Options, seen, row, log, position=None
):
    """Train (or reuse) one seed, evaluate it on seen and held-out methods; append to ``row``."""
    t0 = time.perf_counter()
    workdir = ensure_trained(spec, seed, opts, log, position)
    train_s = _train_seconds(workdir, t0)
    run = ev.load_run_or_explain(workdir, "best")
    for prefix, methods in (("seen", seen), ("heldout", [lo.holdout])):
        res = evaluate_subset(workdir, run, methods, prefix, lo.reevaluate)
        m = res["metrics"]["frame"]
        row[f"{prefix}_auc"].append(100 * m["auc"])
        row[f"{prefix}_eer"].append(100 * m["eer"])
        row[f"{prefix}_acc"].append(100 * m["acc"])
        row[f"n_{prefix}"].append(f"{m['n']} ({m['n_pos']} fake)")
        row[f"{prefix}_ci"].append(bootstrap_result_auc_ci(res))
    row["val_auc"].append(100 * float(run.val_metrics.get("frame_auc", math.nan)))
    row["step"].append(int(run.step))
    row["train_s"].append(train_s)
    log(
        f"  {row['variant']} seed {seed}: seen AUC {row['seen_auc'][-1]:.2f}%, held-out "
        f"{lo.holdout} AUC {row['heldout_auc'][-1]:.2f}% (val {row['val_auc'][-1]:.2f}%,"
        f" best step {run.step}, train {train_s:.0f}s)"
    )


def _scale_note(lo: LomoOptions, faces: Path, spec: RunSpec) -> str:
    cfg = run_config(spec, lo.seeds[0], False)  # the scale every variant shares
    return (
        f"Scale: configs/late_supcon.py:quickstart on face_folder ({faces.name}): "
        f"{cfg.model.backbone} RGB stream with RANDOM init (no ImageNet weights: none exist for "
        f"the tiny backbone and the B4 ones are not available here), {lo.image_size}x"
        f"{lo.image_size} px, {lo.epochs} epochs x {cfg.train.steps_per_epoch} steps of "
        f"batch {cfg.train.batch_size}, Adam lr {cfg.optim.lr:g} (backbone x"
        f"{cfg.optim.backbone_lr_mult:g}), best checkpoint by validation frame AUC (val = 1 in 10 "
        "training videos by md5, same methods). Test split = the folder's test_ files. NOT the "
        "paper's setting (EfficientNet-B4 from ImageNet, 224 px, 40 epochs): compare variants "
        "with each other, not with the paper."
    )


def _say(text: str) -> None:
    print(text, flush=True)


def lomo(lo: LomoOptions, log: Callable[[str], None] = _say) -> tuple[Path, Path]:
    """Run the study; returns the paths of ``<results>/<holdout>.md`` and ``.csv``."""
    faces = Path(lo.faces).expanduser().resolve()
    if not (faces / "real").is_dir() or not (faces / "fake").is_dir():
        raise ReproduceError(
            f"--faces {faces} must hold real/ and fake/<method>/ face images (e.g. "
            "../shared/data/ffpp_faces299, or your own crops from scripts/extract_faces.py)."
        )
    results = Path(lo.results).resolve()
    results.mkdir(parents=True, exist_ok=True)
    data_root = private_data_root(faces, results)
    seen = seen_methods(face_folder_methods(faces, data_root), lo.holdout)
    bad = [v for v in lo.variants if v not in method_variants()]
    if bad:
        raise ReproduceError(f"unknown variant(s) {bad}; choose from {list(method_variants())}")
    opts = Options(results=results, seeds=tuple(lo.seeds), smoke=False, verbose=lo.verbose)
    overrides = data_overrides(lo, faces, data_root, seen)
    rows = []
    n_runs = len(lo.variants) * len(lo.seeds)
    for i, v in enumerate(lo.variants):
        spec = RunSpec(f"{v}_without-{lo.holdout}", f"quickstart,{v}", overrides=overrides)
        row: dict[str, Any] = {"variant": v, "seeds": list(lo.seeds), **{k: [] for k in PER_SEED}}
        for j, s in enumerate(lo.seeds):
            position = (i * len(lo.seeds) + j + 1, n_runs)
            _seed_results(spec, s, lo, opts, seen, row, log, position)
        rows.append(row)
    return write_tables(results, lo.holdout, seen, rows, _scale_note(lo, faces, spec))


# ---------------------------------------------------------------------------------- writing
LOMO_NOTE = (
    "AUC in %, frame level (face_folder stores one image per 'video', so video level is "
    "identical). Mean (± sample std) over seeds; for one seed, [95% bootstrap interval "
    "of the frame AUC, resampling test VIDEOS with all their frames (frames of a video are "
    "not independent), stratified by class, 1000 resamples]: the test sets are small, "
    "so gaps inside these intervals are noise. Drop = held-out - seen. Train time = wall "
    "clock of training, "
    "including compilation and per-epoch validation."
)
CSV_COLUMNS = (
    "holdout",
    "variant",
    "seed",
    "seen_methods",
    "seen_test_auc",
    "heldout_test_auc",
    "seen_test_auc_ci95",
    "heldout_test_auc_ci95",
    "seen_test_eer",
    "heldout_test_eer",
    "seen_test_acc",
    "heldout_test_acc",
    "n_seen_test",
    "n_heldout_test",
    "val_auc",
    "best_step",
    "train_seconds",
)


def _ci(cis: list[tuple[float, float]]) -> str:
    """The bootstrap interval, shown for single-seed rows (several seeds show their std)."""
    return f" [{cis[0][0]:.1f}, {cis[0][1]:.1f}]" if len(cis) == 1 else ""


def _md_row(r: dict) -> list[str]:
    drop = [h - s for h, s in zip(r["heldout_auc"], r["seen_auc"])]
    return [
        r["variant"],
        f"{fmt_mean_std(r['seen_auc'])}{_ci(r['seen_ci'])}",
        f"{fmt_mean_std(r['heldout_auc'])}{_ci(r['heldout_ci'])}",
        fmt_mean_std(drop),
        ",".join(map(str, r["seeds"])),
        ",".join(map(str, r["step"])),
        ",".join(f"{t:.0f}" for t in r["train_s"]),
    ]


def _csv_rows(holdout: str, seen: list[str], r: dict) -> list[list]:
    return [
        [
            holdout,
            r["variant"],
            s,
            "+".join(seen),
            f"{r['seen_auc'][i]:.4f}",
            f"{r['heldout_auc'][i]:.4f}",
            "{:.2f}-{:.2f}".format(*r["seen_ci"][i]),
            "{:.2f}-{:.2f}".format(*r["heldout_ci"][i]),
            f"{r['seen_eer'][i]:.4f}",
            f"{r['heldout_eer'][i]:.4f}",
            f"{r['seen_acc'][i]:.4f}",
            f"{r['heldout_acc'][i]:.4f}",
            r["n_seen"][i],
            r["n_heldout"][i],
            f"{r['val_auc'][i]:.4f}",
            r["step"][i],
            f"{r['train_s'][i]:.1f}",
        ]
        for i, s in enumerate(r["seeds"])
    ]


def write_tables(
    results: Path, holdout: str, seen: list[str], rows: list[dict], note: str
) -> tuple[Path, Path]:
    """``<results>/<holdout>.md`` (one line per variant) and ``.csv`` (one line per seed)."""
    seen_s = "+".join(seen)
    preamble = [
        f"# Leave-one-method-out: held out {holdout} (trained on real + {seen_s})",
        "",
        note,
        "",
        LOMO_NOTE,
        "",
    ]
    header = [
        "Variant",
        f"Seen methods test AUC ({seen_s} + real)",
        f"Held-out test AUC ({holdout} + real)",
        "Drop",
        "Seeds",
        "Best step",
        "Train time (s)",
    ]
    csv_rows = [line for r in rows for line in _csv_rows(holdout, seen, r)]
    return write_table_files(
        results / holdout, preamble, header, [_md_row(r) for r in rows], CSV_COLUMNS, csv_rows
    )


# -------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--faces", required=True, help="folder with real/ and fake/<method>/")
    p.add_argument("--holdout", required=True, help="fake method to hold out, e.g. NeuralTextures")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=6, help="quickstart: 6")
    p.add_argument("--steps-per-epoch", type=int, default=30, help="quickstart: 30")
    p.add_argument(
        "--depthwise",
        default="auto",
        choices=("auto", "native", "shifted"),
        help="depthwise conv form (model.depthwise); same maths, different speed",
    )
    p.add_argument("--lr", type=float, default=None, help="optim.lr (default: config, 1e-4)")
    p.add_argument(
        "--backbone-lr-mult",
        type=float,
        default=None,
        help="optim.backbone_lr_mult (default: config, 0.1: meant for an ImageNet-initialised "
        "backbone; with a random init 1.0 is the natural choice)",
    )
    p.add_argument("--results", default="results/lomo")
    p.add_argument("--reevaluate", action="store_true", help="ignore cached evaluations")
    p.add_argument("--verbose", action="store_true", help="echo training output")
    return p


def options_from_args(args: argparse.Namespace) -> LomoOptions:
    return LomoOptions(
        faces=Path(args.faces),
        holdout=args.holdout,
        variants=tuple(v.strip() for v in args.variants.split(",") if v.strip()),
        seeds=tuple(args.seeds),
        image_size=args.image_size,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        depthwise=args.depthwise,
        lr=args.lr,
        backbone_lr_mult=args.backbone_lr_mult,
        results=Path(args.results),
        reevaluate=args.reevaluate,
        verbose=args.verbose,
    )


def main(argv: list[str] | None = None) -> int:
    """The LOMO CLI: run the study, print the table; a problem the user must fix ends in one
    ``error: ...`` line and status 2 (``--verbose`` / AIRD_VERBOSE=1 add the traceback)."""
    p = build_parser()
    args = p.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds has duplicates: {args.seeds}")
    t0 = time.perf_counter()

    def body() -> int:
        try:
            md, csv_path = lomo(options_from_args(args))
        except (ReproduceError, ev.EvaluationError) as e:
            raise UserError(str(e)) from e
        print()
        print(md.read_text(), end="")
        print(f"\nwrote {md} and {csv_path} in {time.perf_counter() - t0:.0f}s")
        return 0

    return run_cli(body, argv)


if __name__ == "__main__":
    host_memory.relaunch_under_allocator()  # under tcmalloc where chosen (host_memory.py)
    sys.exit(main())
