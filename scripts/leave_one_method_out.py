"""Leave-one-method-out (LOMO) on a face folder: train on three FF++ methods, test on the fourth.

  python scripts/leave_one_method_out.py --faces ../shared/data/ffpp_faces299 \
      --holdout NeuralTextures [--variants late_supcon,rgb_only,freq_only] [--seeds 0] \
      [--image-size 64] [--epochs 6] [--results results/lomo]

The in-repo stand-in for cross-manipulation generalisation. For each variant (and seed): train
on the face folder's ``train`` split restricted (``data.methods``) to the reals and the OTHER
methods, keep the best checkpoint by validation AUC (``val`` carved from ``train``, the same
methods), then score the ``test`` split twice: reals + the seen methods, and reals + the
held-out method. Writes ``<results>/<holdout>.md`` and ``.csv``.

Scale: configs/late_supcon.py:quickstart (tiny EfficientNet, RANDOM init -- no ImageNet
weights exist for it, and the B4 ones are not available here --, small images, a few short
epochs) pointed at the face folder. These numbers say how the method variants compare at that
scale; they are not the paper's setting. Runs are reused/resumed as in scripts/reproduce.py.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402
import reproduce as rp  # noqa: E402  (scripts/reproduce.py: run specs, train/reuse/resume)

DEFAULT_VARIANTS = ("late_supcon", "rgb_only", "freq_only")


def seen_methods(all_methods: list[str], holdout: str) -> list[str]:
    if holdout not in all_methods:
        raise rp.ReproduceError(
            f"--holdout {holdout!r} is not a fake method of the face folder; it has {all_methods}."
        )
    seen = [m for m in all_methods if m != holdout]
    if not seen:
        raise rp.ReproduceError(f"Holding out {holdout!r} leaves no method to train on.")
    return seen


def data_overrides(args, faces: Path, data_root: Path, seen: list[str]) -> tuple:
    return (
        ("data.name", "face_folder"),
        ("data.config", ""),
        ("data.root", str(data_root)),
        ("data.manual_dir", str(faces)),
        ("data.methods", ",".join(seen)),
        ("data.image_size", int(args.image_size)),
        ("data.frames_per_video", 0),  # still images: every image is its own one-frame video
        ("train.epochs", int(args.epochs)),
        ("train.steps_per_epoch", int(args.steps_per_epoch)),
        ("model.depthwise", args.depthwise),
    ) + tuple(
        (k, v)
        for k, v in (("optim.lr", args.lr), ("optim.backbone_lr_mult", args.backbone_lr_mult))
        if v is not None  # unset: the quickstart (= paper) optimiser
    )


def evaluate_subset(workdir: Path, run, methods: list[str], tag: str, reevaluate: bool) -> dict:
    """Test split restricted to reals + ``methods``; cached in <run>/eval/<tag>/."""
    from aird_jax import evaluate as ev

    data_cfg = ev.eval_data_config(run.config, None, None, methods=",".join(methods))
    out_dir = workdir / "eval" / tag
    cache = out_dir / f"{ev.result_stem(data_cfg, 'test', None, None, run.step)}.json"
    if cache.exists() and not reevaluate:
        res = json.loads(cache.read_text())
        if res.get("results_version") == ev.RESULTS_VERSION:
            return res
    return ev.evaluate_run(
        workdir,
        data_cfg,
        "test",
        None,
        "best",
        run=run,
        output_dir=out_dir,
        batch_size=int(run.config.train.eval_batch_size),
        progress=False,
    )


def bootstrap_auc_ci(result: dict, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the frame AUC, resampling test images (stratified
    by class): how much of a gap between variants the test-set size alone can explain."""
    from aird_jax import metrics

    with np.load(result["files"]["scores"]) as z:
        scores, labels = z["scores"].astype(np.float64), z["labels"].astype(int)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(n):
        i = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        aucs.append(metrics.roc_auc(labels[i], scores[i]))
    lo, hi = np.percentile(aucs, [2.5, 97.5])
    return 100 * float(lo), 100 * float(hi)


def _fmt(vals: list[float]) -> str:
    a = np.asarray(vals, np.float64)
    if a.size == 0 or not np.all(np.isfinite(a)):
        return "nan"
    return f"{a.mean():.1f}" if a.size == 1 else f"{a.mean():.1f} ± {a.std(ddof=1):.1f}"


def _ci(cis: list[tuple[float, float]]) -> str:
    """The bootstrap interval, shown for single-seed rows (several seeds show their std)."""
    return f" [{cis[0][0]:.1f}, {cis[0][1]:.1f}]" if len(cis) == 1 else ""


def write_tables(results: Path, holdout: str, seen: list[str], rows: list[dict], note: str):
    seen_s = "+".join(seen)
    md = [
        f"# Leave-one-method-out: held out {holdout} (trained on real + {seen_s})",
        "",
        note,
        "",
        "AUC in %, frame level (face_folder stores one image per 'video', so video level is "
        "identical). Mean (± sample std) over seeds; for one seed, [95% bootstrap interval "
        "over the test images, stratified by class, 1000 resamples]: the test sets are small, "
        "so gaps inside these intervals are noise. Drop = held-out - seen. Train time = wall "
        "clock of training, "
        "including compilation and per-epoch validation.",
        "",
        f"| Variant | Seen methods test AUC ({seen_s} + real) | Held-out test AUC "
        f"({holdout} + real) | Drop | Seeds | Best step | Train time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        drop = [h - s for h, s in zip(r["heldout_auc"], r["seen_auc"])]
        md.append(
            f"| {r['variant']} | {_fmt(r['seen_auc'])}{_ci(r['seen_ci'])} | "
            f"{_fmt(r['heldout_auc'])}{_ci(r['heldout_ci'])} | "
            f"{_fmt(drop)} | {','.join(map(str, r['seeds']))} | "
            f"{','.join(map(str, r['step']))} | "
            f"{','.join(f'{t:.0f}' for t in r['train_s'])} |"
        )
    md_path = results / f"{holdout}.md"
    md_path.write_text("\n".join(md) + "\n")
    csv_path = results / f"{holdout}.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
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
            ]
        )
        for r in rows:
            for i, s in enumerate(r["seeds"]):
                w.writerow(
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
                )
    return md_path, csv_path


def lomo(args) -> tuple[Path, Path]:
    from aird_jax import evaluate as ev
    from aird_jax.data import pipeline

    faces = Path(args.faces).expanduser().resolve()
    if not (faces / "real").is_dir() or not (faces / "fake").is_dir():
        raise rp.ReproduceError(
            f"--faces {faces} must hold real/ and fake/<method>/ face images (e.g. "
            "../shared/data/ffpp_faces299, or your own crops from scripts/extract_faces.py)."
        )
    results = Path(args.results).resolve()
    results.mkdir(parents=True, exist_ok=True)
    # A private build root: the face_folder build is keyed by name, not by folder, so a build
    # of another folder under the default root would otherwise be reused silently.
    data_root = results / "data"
    source = data_root / "faces_source.txt"
    if source.exists() and source.read_text().strip() != str(faces):
        raise rp.ReproduceError(
            f"{data_root} holds a build of {source.read_text().strip()}, not {faces}; use "
            "another --results folder."
        )
    data_root.mkdir(parents=True, exist_ok=True)
    source.write_text(str(faces) + "\n")
    probe = {"name": "face_folder", "root": str(data_root), "manual_dir": str(faces)}
    all_methods = pipeline.dataset_methods(pipeline._builder_for(probe))
    seen = seen_methods(all_methods, args.holdout)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in rp.load_config_module().METHOD_VARIANTS]
    if bad:
        raise rp.ReproduceError(
            f"unknown variant(s) {bad}; choose from {rp.load_config_module().METHOD_VARIANTS}"
        )
    opts = rp.Options(results=results, seeds=tuple(args.seeds), smoke=False, verbose=args.verbose)
    overrides = data_overrides(args, faces, data_root, seen)
    rows = []
    for v in variants:
        spec = rp.RunSpec(f"{v}_without-{args.holdout}", f"quickstart,{v}", overrides=overrides)
        row: dict[str, Any] = {"variant": v, "seeds": list(args.seeds)}
        for k in ("seen_auc", "heldout_auc", "seen_eer", "heldout_eer", "seen_acc",
                  "heldout_acc", "n_seen", "n_heldout", "val_auc", "step", "train_s",
                  "seen_ci", "heldout_ci"):  # fmt: skip
            row[k] = []
        for s in args.seeds:
            t0 = time.perf_counter()
            workdir = rp.ensure_trained(spec, s, opts, print)
            marker = json.loads((workdir / "reproduce_run.json").read_text())
            train_s = marker.get("train_seconds")
            if train_s is None:  # trained now: record the wall time with the run
                train_s = time.perf_counter() - t0
                marker["train_seconds"] = train_s
                (workdir / "reproduce_run.json").write_text(json.dumps(marker, indent=2))
            run = ev.load_run_or_explain(workdir, "best")
            seen_res = evaluate_subset(workdir, run, seen, "seen", args.reevaluate)
            held_res = evaluate_subset(workdir, run, [args.holdout], "heldout", args.reevaluate)
            for prefix, res in (("seen", seen_res), ("heldout", held_res)):
                m = res["metrics"]["frame"]
                row[f"{prefix}_auc"].append(100 * m["auc"])
                row[f"{prefix}_eer"].append(100 * m["eer"])
                row[f"{prefix}_acc"].append(100 * m["acc"])
                row[f"n_{prefix}"].append(f"{m['n']} ({m['n_pos']} fake)")
                row[f"{prefix}_ci"].append(bootstrap_auc_ci(res))
            row["val_auc"].append(100 * float(run.val_metrics.get("frame_auc", math.nan)))
            row["step"].append(int(run.step))
            row["train_s"].append(float(train_s))
            print(
                f"  {v} seed {s}: seen AUC {row['seen_auc'][-1]:.2f}%, held-out "
                f"{args.holdout} AUC {row['heldout_auc'][-1]:.2f}% (val {row['val_auc'][-1]:.2f}%,"
                f" best step {run.step}, train {train_s:.0f}s)",
                flush=True,
            )
        rows.append(row)
    cfg = rp.run_config(spec, args.seeds[0], False)  # the scale every variant shares
    note = (
        f"Scale: configs/late_supcon.py:quickstart on face_folder ({faces.name}): "
        f"{cfg.model.backbone} RGB stream with RANDOM init (no ImageNet weights: none exist for "
        f"the tiny backbone and the B4 ones are not available here), {args.image_size}x"
        f"{args.image_size} px, {args.epochs} epochs x {cfg.train.steps_per_epoch} steps of "
        f"batch {cfg.train.batch_size}, Adam lr {cfg.optim.lr:g} (backbone x"
        f"{cfg.optim.backbone_lr_mult:g}), best checkpoint by validation frame AUC (val = 1 in 10 "
        "training videos by md5, same methods). Test split = the folder's test_ files. NOT the "
        "paper's setting (EfficientNet-B4 from ImageNet, 224 px, 40 epochs): compare variants "
        "with each other, not with the paper."
    )
    return write_tables(results, args.holdout, seen, rows, note)


def main(argv: list[str] | None = None) -> int:
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
    args = p.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds has duplicates: {args.seeds}")
    t0 = time.perf_counter()
    try:
        md, csv_path = lomo(args)
    except rp.ReproduceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print()
    print(md.read_text(), end="")
    print(f"\nwrote {md} and {csv_path} in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
