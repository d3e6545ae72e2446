"""Training runs of the experiments: what to train, with which config, and train/reuse/resume.

A ``RunSpec`` names a method variant of configs/late_supcon.py (plus overrides); for each seed it
is trained with ``train.train_and_evaluate`` into ``<results>/runs/<key>_seed<k>``. A finished run
(marker file ``reproduce_run.json`` with the same config) is reused, an interrupted one is
resumed, and a folder trained with a DIFFERENT config is an error (never silently mixed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aird_jax import train
from aird_jax.config import RESUME_MUTABLE, config_module, jsonable, same_config, set_path
from aird_jax.models import registered_models

CONFIG_FILE = "configs/late_supcon.py"
SPECTRAL_CONFIG_FILE = "configs/spectral.py"
MARKER = "reproduce_run.json"  # written into a run's folder once it finished


class ReproduceError(RuntimeError):
    """Something the user must fix; the message says what."""


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
    # The config file whose ``get_config(variant)`` the run starts from ("" = CONFIG_FILE);
    # configs/spectral.py for the scikit-learn spectral baselines (fitted, not trained).
    config_file: str = ""

    def model_for(self, smoke: bool, registry: Sequence[str]) -> str:
        if smoke and self.smoke_model_name in registry:
            return self.smoke_model_name
        return self.model_name


def implemented(run: RunSpec, registry: Sequence[str], smoke: bool = False) -> bool:
    return run.model_for(smoke, registry) in registry


@dataclasses.dataclass
class Options:
    """How to run an experiment: where results go, which seeds, smoke scale or paper scale."""

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


# The runs the paper's tables need (each trained once per seed, shared between tables).
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
    # F3-Net's two streams and SPSL's trunk start from the same ImageNet Xception file (their
    # stems adapted on load: models/baselines/f3net.py, spsl.py).
    "F3-Net": RunSpec(
        "f3net",
        "late_fusion",
        "f3net",
        smoke_model_name="f3net_tiny",
        real_overrides=(("model.pretrained", "data/weights/legacy_xception.msgpack"),),
    ),
    "SPSL": RunSpec(
        "spsl",
        "late_fusion",
        "spsl",
        smoke_model_name="spsl_tiny",
        real_overrides=(("model.pretrained", "data/weights/legacy_xception.msgpack"),),
    ),
    # Face X-ray learns the blending boundary, so it trains on real faces plus self-blended fakes
    # (data.fakes=sbi; aird_jax/data/blend.py), on the EfficientNet trunk (see face_xray.py).
    "Face X-ray": RunSpec(
        "face_xray",
        "late_fusion",
        "face_xray",
        overrides=(("data.fakes", "sbi"),),
        smoke_model_name="face_xray_tiny",
    ),
}


def cutoff_run(k: int) -> RunSpec:
    """The full method with DCT high-pass cutoff ``k`` (Table IV)."""
    if k == 4:
        return OURS  # the default model IS the cutoff-4 run: train it once
    return RunSpec(f"late_supcon_cutoff{k}", "late_supcon", overrides=(("model.dct_cutoff", k),))


# Smoke runs take a few steps, so XLA compile time dominates them: the native grouped
# depthwise conv compiles ~2x faster on CPU than the "shifted" form "auto" picks there for speed.
SMOKE_OVERRIDES: tuple[tuple[str, Any], ...] = (("model.depthwise", "native"),)


def base_config(variant: str | None = None, smoke: bool = False, config_file: str = ""):
    """configs/late_supcon.py:``variant`` (prefixed with ``smoke,`` in smoke mode), or
    ``config_file``:``variant`` (no smoke prefix: only configs/late_supcon.py has scales)."""
    if config_file and config_file != CONFIG_FILE:
        return config_module(config_file).get_config(variant or None)
    arg = ",".join(a for a in ("smoke" if smoke else "", variant or "") if a)
    return config_module(CONFIG_FILE).get_config(arg or None)


def method_variants() -> tuple[str, ...]:
    """The method variants configs/late_supcon.py defines (late_supcon, rgb_only, ...)."""
    return tuple(config_module(CONFIG_FILE).METHOD_VARIANTS)


def apply_overrides(cfg, overrides: Sequence[tuple[str, Any]]) -> None:
    """``set_path`` for each (dotted key, value); a misspelt key is a ReproduceError."""
    for k, v in overrides:
        try:
            set_path(cfg, k, v)
        except KeyError as e:
            raise ReproduceError(f"bad override {k}={v!r}: {e.args[0]}") from e


def run_config(run: RunSpec, seed: int, smoke: bool, extra: Sequence[tuple[str, Any]] = ()):
    """The full config of ``run`` for ``seed`` (smoke or paper scale, plus ``extra`` overrides)."""
    cfg = base_config(run.variant, smoke, run.config_file)
    cfg.seed = int(seed)
    cfg.model.name = run.model_for(smoke, registered_models())
    mode = SMOKE_OVERRIDES if smoke else run.real_overrides
    apply_overrides(cfg, (*mode, *run.overrides, *extra))
    cfg.train.progress = False  # the harness prints its own one line per run
    return cfg


def config_fingerprint(cfg) -> dict:
    """The run's identity: its config, minus cosmetic keys."""
    d = json.loads(cfg.to_json_best_effort(sort_keys=True))
    d.get("train", {}).pop("progress", None)  # cosmetic; must not invalidate a finished run
    return d


def run_dir(run: RunSpec, seed: int, opts: Options) -> Path:
    return opts.results / "runs" / f"{run.key}_seed{seed}"


# Lines of the training output echoed to the console while a run trains quietly (the rest stays
# in <run>/train_log.txt): train.py prints one "epoch k/N: ..." line per epoch.
PROGRESS_LINE = re.compile(r"^(epoch \d+/\d+\b|Resuming from )")
INDENT = "          "


def ensure_trained(
    run: RunSpec,
    seed: int,
    opts: Options,
    log: Callable[[str], None],
    position: tuple[int, int] | None = None,
) -> Path:
    """Train (or reuse / resume) ``run`` for ``seed``; returns its workdir.

    Says before training which run it is (``position`` = (i, n): run i of n) and where its full
    output goes (``<run>/train_log.txt``); while it trains quietly (not ``opts.verbose``) each
    epoch's line is echoed through ``log``, so a long run is never silent. ``opts.progress``
    adds the training step bar (on stderr).
    """
    workdir = run_dir(run, seed, opts)
    cfg = run_config(run, seed, opts.smoke, opts.overrides)
    fp = config_fingerprint(cfg)
    cfg.train.progress = bool(opts.progress)  # cosmetic (not in the fingerprint)
    marker = workdir / MARKER
    where = f"[{position[0]}/{position[1]}] " if position else ""
    if marker.exists():
        done = json.loads(marker.read_text())
        if not same_config(done.get("config") or {}, fp, RESUME_MUTABLE):
            raise ReproduceError(
                f"{workdir} holds a run trained with a different config than this command "
                f"needs ({run.key}, seed {seed}). Delete that folder or use another --results."
            )
        log(f"  {where}reuse   {workdir.relative_to(opts.results)} (finished)")
        return workdir
    log_path = workdir / "train_log.txt"
    what = "resuming" if workdir.exists() else "training"
    log(
        f"  {where}{what} {run.key} seed {seed} -> {log_path}"
        + ("" if opts.verbose else " (one line per epoch below; full output in that file)")
    )
    t0 = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    console = sys.stdout
    tag = f"{run.key} seed {seed}"

    def progress(line: str) -> None:
        if PROGRESS_LINE.match(line):
            with contextlib.redirect_stdout(console):  # log may print: not into the log file
                log(f"{INDENT}{tag}: {line.strip()}")

    with (
        log_path.open("a") as f,
        contextlib.redirect_stdout(
            _Tee(f, console if opts.verbose else None, on_line=None if opts.verbose else progress)
        ),
    ):
        try:
            summary = (opts.trainer or trainer_for(cfg))(cfg, str(workdir))
        except BaseException:
            log(f"{INDENT}FAILED; training output is in {log_path}")
            raise
    seconds = time.perf_counter() - t0  # this call's wall time (a resumed run: its last leg)
    done = {"config": fp, "summary": summary, "train_seconds": round(seconds, 1)}
    marker.write_text(json.dumps(done, indent=2, sort_keys=True, default=_default))
    log(f"{INDENT}{tag} done in {seconds:.0f}s")
    return workdir


def trainer_for(cfg) -> Callable[[Any, str], dict]:
    """How a run's config is trained: gradient training, or a scikit-learn fit (spectral)."""
    from aird_jax.models.spectral import SPECTRAL_MODELS

    if cfg.model.name in SPECTRAL_MODELS:
        from aird_jax import spectral_fit  # sklearn + absl flags: only when a baseline is fitted

        return spectral_fit.fit_spectral
    return train.train_and_evaluate


def _default(v: Any) -> Any:
    """``json.dumps(default=...)``: numpy values as plain Python, anything else as its str."""
    out = jsonable(v)
    return str(out) if out is v else out


class _Tee:
    """File-like: training output goes to the run's log file, optionally to the console, and
    (``on_line``) each complete line to a callback."""

    def __init__(self, *streams, on_line: Callable[[str], None] | None = None):
        self.streams = [s for s in streams if s is not None]
        self.on_line = on_line
        self._partial = ""

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        if self.on_line is not None:
            *lines, self._partial = (self._partial + text).split("\n")
            for line in lines:
                self.on_line(line)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


def private_data_root(faces: Path, results: Path) -> Path:
    """The build root of one experiment folder, tied to the face folder it was made for: a
    second faces folder gets a clear error instead of a mixed results folder (its runs and
    tables would no longer say which images they were measured on)."""
    data_root = results / "data"
    source = data_root / "faces_source.txt"
    if source.exists() and source.read_text().strip() != str(faces):
        raise ReproduceError(
            f"{data_root} holds a build of {source.read_text().strip()}, not {faces}; use "
            "another --results folder."
        )
    data_root.mkdir(parents=True, exist_ok=True)
    source.write_text(str(faces) + "\n")
    return data_root
