"""Checks that fail BEFORE hours of training: every dataset and ImageNet weight file a table
needs is there, or the error says where to get it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from aird_jax.data import pipeline
from aird_jax.experiments.cached_eval import TRAIN_TARGET, target_of
from aird_jax.experiments.runs import (
    Options,
    ReproduceError,
    RunSpec,
    apply_overrides,
    base_config,
    run_config,
)
from aird_jax.models import port_command


def needed_splits(roles: Iterable[str], smoke: bool) -> list[tuple[str, str, str]]:
    """(dataset, builder config, split) of training, validation and every test role, once each."""
    base = base_config(None, smoke)
    train_name = TRAIN_TARGET["smoke" if smoke else "real"]
    needed = [(*train_name, base.data.train_split), (*train_name, base.data.val_split)]
    needed += [target_of(r, smoke) for r in sorted(roles)]
    return list(dict.fromkeys(needed))


def check_datasets(roles: set[str], opts: Options, n: int) -> None:
    """Fail BEFORE hours of training when a dataset the table needs is missing."""
    base = base_config(None, opts.smoke)
    data_overrides = [(k[len("data.") :], v) for k, v in opts.overrides if k.startswith("data.")]
    for name, config, split in needed_splits(roles, opts.smoke):
        data_cfg = base.data.copy_and_resolve_references()
        with data_cfg.unlocked():
            data_cfg.name, data_cfg.config, data_cfg.manual_dir = name, config, ""
        apply_overrides(data_cfg, data_overrides)
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
    for r in runs:
        cfg = run_config(r, opts.seeds[0], opts.smoke, opts.overrides)
        path = cfg.model.get("pretrained", "")
        if path and not Path(path).is_file():
            raise ReproduceError(
                f"Table {n} trains {r.key} from ImageNet weights {path} (relative to the current "
                f"directory: run from the repository root), which do not exist. Create them "
                f"with:\n  {port_command(cfg.model)}\nor pass --set model.pretrained=PATH."
            )
