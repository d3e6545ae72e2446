"""Entry point: ``python -m aird_jax.main --config configs/late_supcon.py[:variant]``.

Optional ``--workdir DIR`` (default ``runs/<config name>[_<variant>]``).
Overrides: ``--config.optim.lr=3e-4``, ``--config.model.dct_cutoff=8``, ... (a misspelt key is
rejected with the valid keys listed). Rerunning the same command resumes from the latest
checkpoint in ``--workdir`` (default ``runs/<config name>[_<variant>]``).

Devices: every local device trains (data parallel; ``train.batch_size`` is the global batch and
must divide evenly). Multi-host: start the same command on every host with a shared ``--workdir``;
``jax.distributed.initialize()`` runs when the environment says so (SLURM with several tasks, Open
MPI, multi-host Cloud TPU, or explicitly ``JAX_COORDINATOR_ADDRESS=host:port JAX_NUM_PROCESSES=N
JAX_PROCESS_ID=i``). Each host reads only its shard of the training data; validation runs on
every host over the whole split on that host's devices.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from aird_jax import config as cfg
from aird_jax import parallel, train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config",
    None,
    "Training configuration file (configs/late_supcon.py[:variant]).",
    lock_config=True,
)
flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config>[_<variant>]).")
flags.mark_flags_as_required(["config"])


def default_workdir(config_spec: str) -> str:
    path, _, arg = config_spec.partition(":")
    name = Path(path).stem + (f"_{arg.replace(',', '_')}" if arg else "")
    return str(Path("runs") / name)


def _config_spec(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a.startswith("--config="):
            return a.split("=", 1)[1]
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def explain_override_error(argv: list[str], error: Exception) -> str:
    """Turn a failed ``--config.x.y=v`` into "unknown key ... valid keys: ..."."""
    spec = _config_spec(argv)
    try:
        config = cfg.load_config(spec) if spec else None
    except Exception:  # the config file itself is broken: show the original error
        config = None
    for a in argv:
        if not a.startswith("--config."):
            continue
        path = a[len("--config.") :].split("=", 1)[0].split(".")
        node, walked = config, []
        for key in path:
            if node is None or not hasattr(node, "keys"):
                break
            if key not in node:
                where = ".".join(walked) or "the top level"
                return (
                    f"Invalid override {a!r}: {where} has no key {key!r}. "
                    f"Valid keys there: {', '.join(sorted(node.keys()))}"
                )
            node, walked = node[key], walked + [key]
    return f"Invalid command line: {error}"


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing with readable errors for misspelt or ill-typed config overrides."""
    try:
        return FLAGS(argv)
    except (AttributeError, KeyError, TypeError, ValueError, flags.Error) as e:
        sys.exit(explain_override_error(argv, e))


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # Orbax is chatty at INFO
    parallel.maybe_initialize_distributed()
    config = FLAGS.config
    workdir = FLAGS.workdir or default_workdir(config_flags.get_config_filename(FLAGS["config"]))
    try:
        cfg.validate_config(config)  # before any device work or compilation
    except ValueError as e:
        sys.exit(f"Invalid configuration: {e}")
    train.train_and_evaluate(config, workdir)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
