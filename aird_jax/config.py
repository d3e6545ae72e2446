"""Where a configuration enters the program: load it, validate it once, and describe the run.

``load_config("configs/late_supcon.py:smoke")`` resolves a config spec the way ``--config`` does;
``validate_config`` is the one place values are checked (each model family contributes its own
rules through the registry), so everything downstream reads values without re-defaulting or
re-checking them. ``package_versions`` and ``git_commit`` say what produced a number; the run's
``config.json`` is written and compared here too (resuming with another configuration is refused).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import ml_collections
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
PARALLEL_MODES = ("shard_map", "pmap")
# Keys that may change between a run and its resumption without changing any result.
RESUME_MUTABLE = {
    "train.progress",
    "train.prefetch",
    "data.workers",
    "data.cache",
    "train.log_every_steps",
}
# Where the data sit, not what they are: ``data.root`` given explicitly or by default, or data
# moved to another disk, does not block a resume. The dataset itself is defined by data.name,
# data.config, the splits, data.methods, data.max_examples and data.frames_per_video, which are
# compared.
DATA_LOCATION = {"data.root", "data.manual_dir", "data.faces_dir"}
# Keys added after runs were first trained, with the value that means "as before". A run saved
# without such a key equals a config holding that value (so older runs resume and are reused).
ADDED_KEYS = {
    "data.crop": "resize",
    "data.fakes": "",
    "data.blend_landmarks": "",
    "loss.xray_weight": 100.0,  # only used when a model predicts an X-ray (data.fakes=sbi)
}
# Keys that never change a number, left out of the note on how a run differs from the paper.
_NOT_SETTINGS = (
    RESUME_MUTABLE
    | DATA_LOCATION
    | {
        "variant",
        "scaled_down",
        "parallel",
        "num_devices",
        "train.eval_batch_size",
        "train.checkpoint_every_steps",
        "train.keep_checkpoints",
    }
)
PAPER_CONFIG = "configs/late_supcon.py"
# The packages whose version can change a number (recorded with every run and evaluation).
_PACKAGES = (
    "aird_jax",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "grain",
    "tensorflow-datasets",
    "numpy",
    "scikit-learn",
    "opencv-python-headless",
)


# ------------------------------------------------------------------------------- loading
def load_python_file(path: str | Path, module_name: str) -> ModuleType:
    """Import a ``.py`` file by path (config files live outside the package)."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


def config_path(spec: str) -> Path:
    """The file a spec (``configs/late_supcon.py:variant``, ``late_supcon``) names."""
    path_s = spec.partition(":")[0]
    path = Path(path_s)
    candidates = [path, REPO_ROOT / path, REPO_ROOT / "configs" / path]
    candidates += [c.with_suffix(".py") for c in candidates if c.suffix != ".py"]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise FileNotFoundError(f"config file {path_s!r} not found (looked in {REPO_ROOT}/configs)")
    return found


def config_module(spec: str = "configs/late_supcon.py") -> ModuleType:
    """The config file as a module (its variant lists, ``get_config``)."""
    found = config_path(spec)
    return load_python_file(found, f"aird_config_{found.stem}")


def load_config(spec: str) -> ml_collections.ConfigDict:
    """``"configs/late_supcon.py:smoke"`` (or ``"late_supcon:smoke"``) -> ConfigDict.

    The same resolution ``--config`` uses, for scripts and tests that build configs in Python.
    """
    arg = spec.partition(":")[2]
    module = config_module(spec)
    return module.get_config(arg) if arg else module.get_config()


def set_path(cfg: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
    """``set_path(cfg, "train.epochs", 3)``; a misspelt key raises KeyError naming it."""
    *parents, leaf = dotted.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    if leaf not in node:
        raise KeyError(f"config has no key {dotted!r}")
    with node.unlocked():
        node[leaf] = value


# ---------------------------------------------------------------------------- validation
def validate_config(config: ml_collections.ConfigDict) -> None:
    """Every value check that does not need data or devices; raises ValueError before compiling.

    The one place values are checked: the model registry and the optimiser contribute their own
    rules, and nothing downstream checks again.
    """
    from aird_jax import optim
    from aird_jax.data import blend
    from aird_jax.models import validate_model_config
    from aird_jax.models.baselines.face_xray import predicts_xray

    validate_model_config(config.model)
    optim.validate_optim_config(config.optim)
    t, lo, d = config.train, config.loss, config.data
    checks = [
        (
            config.parallel in PARALLEL_MODES,
            f"parallel must be one of {PARALLEL_MODES}, got {config.parallel!r}",
        ),
        (int(config.num_devices) >= 0, f"num_devices must be >= 0, got {config.num_devices}"),
        (t.batch_size > 0, f"train.batch_size must be > 0, got {t.batch_size}"),
        (t.eval_batch_size > 0, f"train.eval_batch_size must be > 0, got {t.eval_batch_size}"),
        (t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}"),
        (t.patience >= 1, f"train.patience must be >= 1, got {t.patience}"),
        (t.steps_per_epoch >= 0, f"train.steps_per_epoch must be >= 0, got {t.steps_per_epoch}"),
        (
            t.checkpoint_every_steps >= 0,
            f"train.checkpoint_every_steps must be >= 0, got {t.checkpoint_every_steps}",
        ),
        (t.get("prefetch", 0) >= 0, f"train.prefetch must be >= 0, got {t.get('prefetch')}"),
        (t.keep_checkpoints >= 1, f"train.keep_checkpoints must be >= 1, got {t.keep_checkpoints}"),
        (lo.lam >= 0, f"loss.lam must be >= 0, got {lo.lam}"),
        (lo.temperature > 0, f"loss.temperature must be > 0, got {lo.temperature}"),
        (
            lo.get("xray_weight", 0.0) >= 0,
            f"loss.xray_weight must be >= 0, got {lo.get('xray_weight')}",
        ),
        (
            d.get("fakes", "") in ("", "sbi"),
            f"data.fakes must be '' (the dataset's fakes) or 'sbi', got {d.get('fakes')!r}",
        ),
        (
            d.get("fakes", "") == "sbi" or not predicts_xray(config.model.name),
            f"model {config.model.name!r} learns the blending boundary (X-ray), which only "
            "blended fakes provide: add --config.data.fakes=sbi",
        ),
        (
            d.image_size > 0 and d.image_size % 8 == 0,
            "data.image_size must be a positive multiple of 8 (8x8 DCT blocks), "
            f"got {d.image_size}",
        ),
        (
            d.get("crop", "resize") in ("resize", "native"),
            f"data.crop must be 'resize' or 'native', got {d.get('crop')!r}",
        ),
        (
            d.get("cache", "") in ("", "decoded"),
            f"data.cache must be '' (off) or 'decoded', got {d.get('cache')!r}",
        ),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(msg)
    blend.parse_landmarks(d.get("blend_landmarks", ""))  # raises ValueError naming the format


# ------------------------------------------------------------------------- provenance
def package_versions() -> dict[str, str]:
    """Versions of the packages that can change a number, plus Python and the JAX backend."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    try:
        import jax

        devs = jax.devices()
        out["jax_backend"] = jax.default_backend()
        out["device"] = f"{len(devs)} x {devs[0].device_kind}"
    except Exception as e:  # noqa: BLE001 - versions are informative, never fatal
        out["jax_backend"] = f"unavailable ({e})"
    return out


# What counts as a local edit of the code: results, runs and notes written beside it do not.
CODE_PATHS = ("aird_jax", "configs", "scripts", "pyproject.toml")


def read_git_commit(root: Path) -> str:
    """HEAD of the checkout at ``root`` (``+dirty`` when the code in it, :data:`CODE_PATHS`,
    has uncommitted edits), or ``unknown``."""
    try:
        r = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "-uno", "--", *CODE_PATHS],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return r.stdout.strip() + ("+dirty" if dirty else "") if r.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.cache
def git_commit() -> str:
    """The commit of the code this process runs, read once when this module is imported: a
    long job (the study) must not label its later runs with commits made while it ran."""
    return read_git_commit(REPO_ROOT)


git_commit()


def jsonable(v: Any) -> Any:
    """``json.dumps(default=jsonable)``: numpy scalars and arrays as plain Python values."""
    if isinstance(v, np.floating | np.integer):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if hasattr(v, "item") and getattr(v, "shape", None) == ():
        return v.item()
    if isinstance(v, Path):
        return str(v)
    return v


def to_dict(config: ml_collections.ConfigDict) -> dict:
    return json.loads(config.to_json())


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


# ------------------------------------------------------------------- the run's config.json
def read_run_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The resolved config a run was trained with (its ``config.json``)."""
    f = Path(workdir) / "config.json"
    if not f.is_file():
        raise FileNotFoundError(
            f"{f} not found: {workdir} is not a training run directory (train one with "
            "`python -m aird_jax.main --config configs/late_supcon.py --workdir DIR`)"
        )
    return ml_collections.ConfigDict(json.loads(f.read_text())["config"])


def check_workdir(workdir: Path) -> None:
    """Refuse a ``--workdir`` that cannot hold a run (a file, under a file, not writable) before
    any work; nothing is created."""
    if workdir.exists() and not workdir.is_dir():
        raise NotADirectoryError(
            f"--workdir {workdir} is a file, not a directory; pick another --workdir"
        )
    existing = workdir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(
            f"--workdir {workdir} lies under {existing}, which is a file; pick another --workdir"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            f"--workdir {workdir} cannot be written ({existing} is read-only); pick a writable "
            "--workdir"
        )


def _differences(old: dict, new: dict, ignore: set[str]) -> list[str]:
    a, b = flatten(old), flatten(new)
    for k, v in ADDED_KEYS.items():  # saved before the key existed = its "as before" value
        for d in (a, b):
            d.setdefault(k, v)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in ignore)


def same_config(old: dict, new: dict, ignore: set[str] = frozenset()) -> bool:
    """Whether two saved configurations describe the same run (keys added since: see ADDED_KEYS)."""
    return not _differences(old, new, set(ignore))


def check_run_config(config: ml_collections.ConfigDict, workdir: Path) -> None:
    """Refuse to resume ``workdir`` with another configuration (location keys excepted)."""
    f = workdir / "config.json"
    if not f.is_file():
        return
    a, b = flatten(json.loads(f.read_text())["config"]), flatten(to_dict(config))
    diff = _differences(a, b, RESUME_MUTABLE | DATA_LOCATION)
    if diff:
        lines = "\n".join(
            f"  {k}: {a.get(k, '<absent>')!r} (saved) vs {b.get(k, '<absent>')!r}" for k in diff
        )
        raise ValueError(
            f"{workdir} already holds a run with a different configuration:\n{lines}\n"
            "Resume with the original configuration, or pick a new --workdir."
        )


def write_run_config(config: ml_collections.ConfigDict, workdir: Path) -> None:
    """Record the configuration of a run that has started (kept as first written on resume)."""
    f = workdir / "config.json"
    if f.is_file():
        return
    workdir.mkdir(parents=True, exist_ok=True)
    record = {
        "config": to_dict(config),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = f.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, f)


def check_or_write_run_config(
    config: ml_collections.ConfigDict, workdir: Path, write: bool = True
) -> None:
    """Refuse to resume ``workdir`` with another configuration; record it for a new run."""
    check_run_config(config, workdir)
    if write:
        write_run_config(config, workdir)


def paper_difference(config: ml_collections.ConfigDict) -> str:
    """How the final ``config`` differs from the paper's setting (``configs/late_supcon.py``
    with the same method variant), key by key; "" when it is the paper's setting.

    Built from the config actually run, overrides included (not from the scale variant's
    description). A config from another file is described by its own ``scaled_down`` text.
    """
    try:
        module = config_module(PAPER_CONFIG)
        methods = [
            v for v in str(config.get("variant", "")).split(",") if v in module.METHOD_VARIANTS
        ]
        paper = module.get_config(",".join(methods))
    except (OSError, ImportError, AttributeError, ValueError):
        return str(config.get("scaled_down", ""))
    a, b = flatten(to_dict(paper)), flatten(to_dict(config))
    diff = _differences(a, b, _NOT_SETTINGS)
    return "; ".join(f"{k} {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}" for k in diff)
