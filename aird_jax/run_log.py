"""What a training run tells its user: progress bar, ``metrics.jsonl``, TensorBoard events and the
final summary. Only the chief process (index 0) writes; on the others every method is a no-op.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import ml_collections

_SUMMARY_KEYS = (
    "frame_auc",
    "frame_eer",
    "frame_acc",
    "threshold",
    "video_auc",
    "video_eer",
    "video_acc",
    "n_frames",
    "n_videos",
)


class RunLog:
    def __init__(self, workdir: Path, train_cfg: ml_collections.ConfigDict, enabled: bool):
        self.workdir, self.t, self.enabled = workdir, train_cfg, enabled
        self.writer = None
        self.bar = None
        self._pending_bar: tuple[int, int, int] | None = None
        self._t0, self._n_img = 0.0, 0
        if enabled:
            from tensorboardX import SummaryWriter  # heavy: imported only by the chief

            self.writer = SummaryWriter(str(workdir / "tensorboard"))

    def print(self, text: str) -> None:
        if self.enabled:
            print(text, flush=True)

    def start(self, history: list[dict]) -> None:
        """A resumed run's ``metrics.jsonl`` is rewritten from its checkpointed history."""
        if self.enabled:
            write_metrics_jsonl(self.workdir, history)

    # ---------------------------------------------------------------- within an epoch
    def start_epoch(self, epoch: int, steps: int, done: int, compiling: bool = False) -> None:
        """Start the epoch's bar. ``compiling``: the next step compiles the train step, so the
        bar (its clock, hence its ETA and images/s) starts after that step, with a note."""
        self._t0, self._n_img = time.perf_counter(), 0
        if compiling:
            self._pending_bar = (epoch, steps, done)
            if self.enabled and self.t.progress:
                print(
                    f"epoch {epoch + 1}/{self.t.epochs}: compiling the train step (the first "
                    "step; the progress bar and its ETA start after it)...",
                    file=sys.stderr,
                    flush=True,
                )
        else:
            self._open_bar(epoch, steps, done)

    def _open_bar(self, epoch: int, steps: int, done: int) -> None:
        if self.enabled and self.t.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=steps,
                initial=done,
                desc=f"epoch {epoch + 1}/{self.t.epochs}",
                unit="step",
                dynamic_ncols=True,
                file=sys.stderr,
            )

    def step_done(self) -> None:
        if self._pending_bar is not None:  # the compiling step is done: start the clock now
            epoch, steps, done = self._pending_bar
            self._pending_bar = None
            self._t0, self._n_img = time.perf_counter(), 0
            self._open_bar(epoch, steps, done + 1)
            return
        self._n_img += self.t.batch_size
        if self.bar is not None:
            self.bar.update(1)

    def train_metrics(self, gstep: int, m: dict[str, float], lrs: dict[str, float]) -> None:
        """One logged step's metrics and the learning rate of each parameter group, on the one
        x-axis of every tag: the global step."""
        if self.writer is not None:
            for k, v in m.items():
                self.writer.add_scalar(f"train/{k}", v, gstep)
            for group, lr in lrs.items():
                self.writer.add_scalar(f"train/lr_{group}", lr, gstep)

    def rate(self, gstep: int, last: dict[str, float]) -> None:
        """Loss and images/s on the progress bar and in TensorBoard."""
        rate = self._n_img / max(time.perf_counter() - self._t0, 1e-9)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{last['loss']:.4f}", img_s=f"{rate:.1f}")
            if self.writer is not None:
                self.writer.add_scalar("train/images_per_s", rate, gstep)

    def close_bar(self) -> None:
        self._pending_bar = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    # ---------------------------------------------------------------- epoch ends
    def epoch(self, record: dict[str, Any], history: list[dict], improved: bool) -> None:
        if not self.enabled:
            return
        write_metrics_jsonl(self.workdir, history)
        for k, v in record.items():  # x-axis: the global step, as for the train/ tags
            if isinstance(v, float):
                self.writer.add_scalar(f"epoch/{k}", v, record["step"])
        self.writer.flush()
        print(
            f"epoch {record['epoch']}/{self.t.epochs}: train loss "
            f"{record.get('train_loss', 0):.4f} | val frame AUC {record['frame_auc']:.4f} "
            f"video AUC {record['video_auc']:.4f}{' (best)' if improved else ''}",
            flush=True,
        )

    def close(self, summary: dict | None = None) -> None:
        self.close_bar()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if summary is not None and self.enabled:
            print_summary(summary)


def write_metrics_jsonl(workdir: Path, history: list[dict]) -> None:
    """Rewritten from the checkpointed history, so a resumed run never duplicates or loses
    lines (and the file holds no timings: same seed, same bytes)."""
    tmp = workdir / "metrics.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in history))
    os.replace(tmp, workdir / "metrics.jsonl")


def print_summary(s: dict) -> None:
    b = s["best"] or {}
    rows = [("stopped", s["stopped"]), ("best epoch", b.get("epoch")), ("best step", b.get("step"))]
    for k in _SUMMARY_KEYS:
        if k in b:
            v = b[k]
            rows.append((f"val {k}", f"{v:.4f}" if isinstance(v, float) else v))
    rows += [
        ("metrics", s["metrics"]),
        ("tensorboard", s["tensorboard"]),
        ("best checkpoint", s["best_checkpoint"]),
        ("latest checkpoint", s["latest_checkpoint"]),
    ]
    w = max(len(k) for k, _ in rows)
    print("\nBest checkpoint (selected on validation only):")
    for k, v in rows:
        print(f"  {k:<{w}}  {v}")
