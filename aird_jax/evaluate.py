"""Evaluate a trained run's checkpoint on any dataset split, optionally degraded.

Protocol (paper IV-B/IV-C): every frame is scored, a video's score is the mean of its frame
scores, and accuracy is taken at the threshold chosen on the run's OWN validation set (stored with
the run by training), never at a threshold tuned on the test data. We report frame- and
video-level AUC, average precision, EER, TPR at FPR 1% / 0.1%, accuracy, and the AUC of the
reals against each manipulation method alone, and write them with everything needed to trace the
number (dataset, split(s), method filter, degradation, checkpoint step, counts, package versions)
into the workdir.

``split="all"`` scores the union of the dataset's splits as one test set (a cross-dataset
benchmark the run never trained on, e.g. every Celeb-DF video in one command); ``data.methods``
("Deepfakes,FaceSwap") keeps the reals and only those fakes.

Streaming: only one batch of images is alive at a time; per-frame scores (a float and a short id
per frame) are the only thing accumulated, so memory stays flat however large the test set.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from aird_jax import inference, metrics
from aird_jax.checkpoint import load_run
from aird_jax.cli import UserError
from aird_jax.config import jsonable, package_versions
from aird_jax.data import index, pipeline
from aird_jax.data.degrade import DEGRADATIONS

# Bump when the layout of the results JSON changes (readers check it).
# 2: per-level "ap", "tpr@fpr1%", "tpr@fpr0.1%", "per_method_auc"; top-level "splits", "methods".
RESULTS_VERSION = 2

ALL_SPLITS = "all"  # split name meaning: the union of every split of the dataset


class EvaluationError(UserError, RuntimeError):
    """A problem the user can fix (missing run, dataset, bad argument); the message says how.

    A :class:`aird_jax.cli.UserError`, so a CLI run through ``cli.run`` ends in one line."""


def load_run_or_explain(workdir: str | os.PathLike, checkpoint: str | int = "best"):
    """``checkpoint.load_run`` with a message that names the command to run first."""
    workdir = Path(workdir)
    hint = (
        f"Train it first, e.g.\n  python -m aird_jax.main --config configs/late_supcon.py "
        f"--workdir {workdir}\n(or pick another --checkpoint: best, latest or a step number)."
    )
    if not workdir.is_dir():
        raise EvaluationError(f"Run folder {workdir} does not exist. {hint}")
    try:
        return load_run(workdir, checkpoint=checkpoint)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise EvaluationError(
            f"Cannot load checkpoint {checkpoint!r} from {workdir}: {e}\n{hint}"
        ) from e


def parse_checkpoint(value: str | int) -> str | int:
    """'best' | 'latest' | a step number (CLI strings become ints)."""
    if isinstance(value, int):
        return value
    v = str(value).strip().lower()
    if v in ("best", "latest"):
        return v
    if v.isdigit():
        return int(v)
    raise EvaluationError(f"--checkpoint must be 'best', 'latest' or a step number, got {value!r}")


def parse_frames(value: str | int | None) -> int | None:
    """'all' -> 0 (every frame), N -> N, None -> the dataset's default."""
    if value is None or isinstance(value, int):
        return value
    v = str(value).strip().lower()
    if v == "all":
        return 0
    if v.isdigit() and int(v) > 0:
        return int(v)
    raise EvaluationError(f"--frames must be 'all' or a positive integer, got {value!r}")


def eval_data_config(
    run_config, dataset: str | None = None, config: str | None = None, **overrides
):
    """The run's data config, pointed at another dataset, with training-only options off.

    Image size and (unless overridden) data root come from the run, so the test images are
    preprocessed exactly as the validation images the threshold was chosen on.
    """
    data_cfg = run_config.data.copy_and_resolve_references()
    with data_cfg.unlocked():
        if dataset is not None:
            data_cfg.name = dataset
            data_cfg.config = config if config is not None else ""
            data_cfg.manual_dir = ""  # the run's manual_dir belongs to its training dataset
            data_cfg.max_examples = 0
            if "methods" in data_cfg:  # the run's method filter names its own dataset's methods
                data_cfg.methods = ""
        elif config is not None:
            data_cfg.config = config
        data_cfg.augment = False
        data_cfg.balance = False
        for k, v in overrides.items():
            setattr(data_cfg, k, v)
    return data_cfg


def validation_threshold(run) -> float:
    vm = dict(getattr(run, "val_metrics", None) or {})
    thr = vm.get("threshold")
    if thr is None or not math.isfinite(float(thr)):
        raise EvaluationError(
            "The run has no validation threshold (val_metrics['threshold']); it was saved "
            "before its first validation. Resume training so that validation runs once."
        )
    return float(thr)


def result_stem(
    data_cfg, split: str, degradation: str | None, frames_per_video: int | None, step: int
) -> str:
    """File stem of an evaluation's outputs: dataset, config, split, degradation, frames, step."""
    frames = (
        ""
        if frames_per_video is None
        else ("framesall" if frames_per_video == 0 else f"frames{int(frames_per_video)}")
    )
    extra = f"max{int(data_cfg.max_examples)}" if int(data_cfg.get("max_examples", 0)) else ""
    picked = index.parse_methods(data_cfg.get("methods", ""))
    only = "only-" + "-".join(picked) if picked else ""
    source = index.source_key(data_cfg)  # face_folder: which folder (two never share a file)
    src = f"src{source[:10]}" if source else ""
    return _slug(
        data_cfg.name, data_cfg.config, src, split, only, degradation, frames, extra, f"step{step}"
    )


def _slug(*parts: Any) -> str:
    s = "_".join(str(p) for p in parts if p not in (None, "", "none"))
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in s)


def score_run(run, batches: Iterable[dict], *, total: int | None, progress: bool, desc: str):
    """(scores, labels, video_ids) per frame, through the one scoring path."""
    try:
        return inference.score_batches(
            inference.Scorer(run.model, run.variables),
            batches,
            total=total,
            progress=progress,
            desc=desc,
        )
    except inference.NonFiniteScores as e:
        raise EvaluationError(f"{e}. Evaluate an earlier step with --checkpoint STEP.") from e


def _safe_summary(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """metrics.summarize, but a one-class split yields NaN AUC/EER and a reason, not a crash."""
    try:
        return metrics.summarize(labels, scores, threshold=threshold)
    except ValueError as e:
        return {
            "auc": float("nan"),
            "ap": float("nan"),
            "eer": float("nan"),
            **{k: float("nan") for k in metrics.TPR_AT_FPR},
            "acc": metrics.accuracy(labels, scores, threshold) if labels.size else float("nan"),
            "threshold": threshold,
            "n": int(labels.size),
            "n_pos": int(np.sum(labels)),
            "error": str(e),
        }


def compute_metrics(
    scores: np.ndarray,
    labels: np.ndarray,
    video_ids: np.ndarray,
    threshold: float,
    methods: np.ndarray | None = None,
) -> dict[str, dict[str, Any]]:
    """Frame- and video-level summaries at the given (validation) threshold.

    With ``methods`` (each frame's manipulation method, ``real`` for reals) every level also
    has ``per_method_auc``: the AUC of all reals against the fakes of one method.
    """
    if scores.size == 0:
        raise EvaluationError("The split yielded no samples; check the dataset and split name.")
    frame = _safe_summary(labels, scores, threshold)
    vids, vlab, vsc = metrics.aggregate_by_video(video_ids, labels, scores)
    video = _safe_summary(vlab, vsc, threshold)
    if methods is not None:
        methods = np.asarray(methods).astype(str)
        frame["per_method_auc"] = metrics.per_method_auc(labels, scores, methods)
        of_video = dict(zip(np.asarray(video_ids).astype(str).tolist(), methods.tolist()))
        vmeth = np.asarray([of_video[str(v)] for v in vids], dtype=str)
        video["per_method_auc"] = metrics.per_method_auc(vlab, vsc, vmeth)
    return {"frame": frame, "video": video}


def plot_roc(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> None:
    """ROC curve PNG (matplotlib, Agg backend: works headless)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    for name, (labels, scores) in curves.items():
        try:
            fpr, tpr, _ = metrics.roc_curve(labels, scores)
            auc = metrics.roc_auc(labels, scores)
        except ValueError:
            continue
        ax.plot(fpr, tpr, label=f"{name} (AUC {100 * auc:.1f}%)")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=title,
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _pct(x: Any, width: int = 8) -> str:
    x = float("nan") if x is None else float(x)
    return f"{'-':>{width}} " if math.isnan(x) else f"{100 * x:>{width}.2f}%"


def format_summary(result: dict[str, Any]) -> str:
    """One screen of text: what was evaluated and the frame/video metrics."""
    deg = result["degradation"] or "none"
    split = result["split"]
    if split == ALL_SPLITS and result.get("splits"):
        split += " (" + "+".join(result["splits"]) + ")"
    methods = result.get("methods") or "all"
    lines = [
        f"run        {result['workdir']}  (checkpoint step {result['checkpoint_step']}, "
        f"{result['checkpoint']})",
        f"data       {result['dataset']}"
        + (f"/{result['dataset_config']}" if result["dataset_config"] else "")
        + f"  split={split}  methods={methods}  degradation={deg}"
        + f"  frames={result['frames_per_video']}",
        f"threshold  {result['threshold']:.4f}  (chosen on the run's validation set)",
        f"{'level':<7}{'n':>8}{'fake':>8}{'AUC':>9}{'AP':>9}{'EER':>9}"
        f"{'TPR@1%':>9}{'TPR@.1%':>9}{'Acc':>9}",
    ]
    for level in ("frame", "video"):
        m = result["metrics"][level]
        lines.append(
            f"{level:<7}{m['n']:>8d}{m['n_pos']:>8d}{_pct(m['auc'])}{_pct(m.get('ap'))}"
            f"{_pct(m['eer'])}{_pct(m.get('tpr@fpr1%'))}{_pct(m.get('tpr@fpr0.1%'))}"
            f"{_pct(m['acc'])}"
        )
    per = {lv: result["metrics"][lv].get("per_method_auc") or {} for lv in ("frame", "video")}
    if per["frame"]:
        lines.append("AUC of the reals against each method alone:")
        lines.append(f"  {'method':<24}{'frame':>9}{'video':>9}")
        for name in per["frame"]:
            lines.append(f"  {name:<24}{_pct(per['frame'][name])}{_pct(per['video'].get(name))}")
    if result.get("files"):
        lines.append("wrote      " + ", ".join(result["files"].values()))
    return "\n".join(lines)


def _splits_of(builder, split: str) -> list[str]:
    """``[split]``, or every split of the build for ``split == "all"``."""
    if split == ALL_SPLITS:
        return list(builder.info.splits.keys())
    index.check_split(builder, split)
    return [split]


def _check_methods(builder, data_cfg) -> None:
    """A clear message for ``--methods`` naming a method the dataset does not have."""
    picked = index.parse_methods(data_cfg.get("methods", ""))
    if not picked:
        return
    known = index.dataset_methods(builder)
    unknown = [m for m in picked if m not in known and m != "real"]
    if unknown:
        raise EvaluationError(
            f"--methods names {unknown}, which dataset {builder.name!r} does not have; its fake "
            f"methods are {known} (comma-separated; the reals are always kept)."
        )


def _selection(builder, data_cfg, split: str, frames_per_video: int | None):
    """Per-frame (video_id, method) of what ``eval_loader`` yields for ``split``, in order.

    The loader does not carry ``method``; the record index does (``index.select_eval`` picks the
    same records in the same order as the loader, which yields them sorted and unsharded)."""
    idx, _ = index.select_eval(builder, data_cfg, split, frames_per_video)
    meta = index.record_index(builder, split, need_method=True)
    return meta["video_id"][idx].astype(str), meta["method"][idx].astype(str)


def _score_splits(run, builder, data_cfg, splits, degradation, frames_per_video, batch_size,
                  progress):  # fmt: skip
    """(scores, labels, video_ids, methods or None) per frame over ``splits``, concatenated."""
    ds_label = f"{data_cfg.name}" + (f"/{data_cfg.config}" if data_cfg.config else "")
    parts, methods = [], []
    for sp in splits:
        sel_vids, sel_methods = _selection(builder, data_cfg, sp, frames_per_video)
        loader = pipeline.eval_loader(
            data_cfg,
            sp,
            batch_size=batch_size,
            degradation=degradation,
            frames_per_video=frames_per_video,
        )
        part = score_run(
            run,
            loader,
            total=len(sel_vids),
            progress=progress,
            desc=f"{ds_label}:{sp}" + (f"+{degradation}" if degradation else ""),
        )
        # The loader and the record index must agree frame by frame, or methods would be
        # attached to the wrong frames: then report no per-method AUC rather than a wrong one.
        ok = methods is not None and np.array_equal(part[2], sel_vids)
        methods = methods + [sel_methods] if ok else None
        parts.append(part)
    scores, labels, vids = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return scores, labels, vids, (np.concatenate(methods) if methods else None)


def evaluate_run(
    workdir: str | os.PathLike,
    data_cfg=None,
    split: str = "test",
    degradation: str | None = None,
    checkpoint: str | int = "best",
    *,
    dataset: str | None = None,
    dataset_config: str | None = None,
    frames_per_video: int | None = None,
    batch_size: int = 32,
    output_dir: str | os.PathLike | None = None,
    write: bool = True,
    progress: bool = True,
    run=None,
) -> dict[str, Any]:
    """Evaluate one checkpoint of ``workdir`` on ``split`` of a dataset; returns the results dict.

    ``data_cfg`` (a data ConfigDict) wins; otherwise it is the run's data config pointed at
    ``dataset``/``dataset_config`` (default: the dataset the run was trained on). ``split="all"``
    scores the union of the dataset's splits as one test set; ``data_cfg.methods`` restricts the
    fakes. Results JSON, per-frame scores (.npz) and a ROC PNG go to ``output_dir`` (default
    ``<workdir>/eval``). ``run`` lets a caller pass an already loaded run to skip reloading it.
    """
    checkpoint = parse_checkpoint(checkpoint)
    if degradation in ("", "none"):
        degradation = None
    if degradation is not None:
        if degradation not in DEGRADATIONS:
            raise EvaluationError(
                f"Unknown degradation {degradation!r}; choose one of {sorted(DEGRADATIONS)}."
            )
    if int(batch_size) <= 0:
        raise EvaluationError(f"--batch-size must be a positive integer, got {batch_size}.")
    if run is None:
        run = load_run_or_explain(workdir, checkpoint)
    threshold = validation_threshold(run)
    if data_cfg is None:
        data_cfg = eval_data_config(run.config, dataset, dataset_config)
    ds_label = f"{data_cfg.name}" + (f"/{data_cfg.config}" if data_cfg.config else "")

    try:
        builder = index.prepared_builder(data_cfg)
        splits = _splits_of(builder, split)
    except (FileNotFoundError, KeyError, ValueError, AssertionError) as e:
        raise EvaluationError(
            f"Dataset {ds_label} split {split!r} is not available: {e}\n"
            "Put the dataset where the message above says (see data/README.md), or pick an "
            f"existing split ('{ALL_SPLITS}' = every split)."
        ) from e
    _check_methods(builder, data_cfg)

    t0 = time.perf_counter()
    scores, labels, vids, frame_methods = _score_splits(
        run, builder, data_cfg, splits, degradation, frames_per_video, batch_size, progress
    )
    seconds = time.perf_counter() - t0
    result: dict[str, Any] = {
        "results_version": RESULTS_VERSION,
        "workdir": str(workdir),
        "checkpoint": str(checkpoint),
        "checkpoint_step": int(run.step),
        "dataset": str(data_cfg.name),
        "dataset_config": str(data_cfg.config or ""),
        "split": split,
        "splits": splits,
        "methods": ",".join(index.parse_methods(data_cfg.get("methods", ""))),
        "degradation": degradation,
        "frames_per_video": "default"
        if frames_per_video is None
        else ("all" if frames_per_video == 0 else int(frames_per_video)),
        "image_size": int(data_cfg.image_size),
        "threshold": threshold,
        "threshold_source": "run validation set (val_metrics['threshold'], frame level)",
        "val_metrics": {k: jsonable(v) for k, v in dict(run.val_metrics).items()},
        "n_frames": int(scores.size),
        "n_videos": int(np.unique(vids).size),
        "metrics": compute_metrics(scores, labels, vids, threshold, frame_methods),
        "seconds": round(seconds, 3),
        "versions": package_versions(),
    }
    if write:
        out = Path(output_dir) if output_dir is not None else Path(workdir) / "eval"
        out.mkdir(parents=True, exist_ok=True)
        stem = result_stem(data_cfg, split, degradation, frames_per_video, run.step)
        files = {
            "json": str(out / f"{stem}.json"),
            "roc": str(out / f"{stem}_roc.png"),
            "scores": str(out / f"{stem}_scores.npz"),
        }
        result["files"] = files
        extra = {} if frame_methods is None else {"methods": frame_methods}
        np.savez_compressed(files["scores"], scores=scores, labels=labels, video_ids=vids, **extra)
        vids_u, vlab, vsc = metrics.aggregate_by_video(vids, labels, scores)
        plot_roc(
            Path(files["roc"]),
            {"frame": (labels, scores), "video": (vlab, vsc)},
            title=f"{ds_label} {split}" + (f" ({degradation})" if degradation else ""),
        )
        _atomic_write_json(Path(files["json"]), result)
    return result


def _atomic_write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=jsonable, allow_nan=True))
    os.replace(tmp, path)
