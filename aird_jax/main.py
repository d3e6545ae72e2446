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

A user's mistake (a missing config file, an unknown variant or dataset, absent data, an unusable
``--workdir``, a full disk, a diverged run) ends in one ``error: ...`` line and exit status 2;
``--verbose`` (or ``AIRD_VERBOSE=1``) adds the Python traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from aird_jax import cli, host_memory, parallel, train
from aird_jax import config as cfg

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config",
    None,
    "Training configuration file (configs/late_supcon.py[:variant]).",
    lock_config=True,
)
flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config>[_<variant>]).")
flags.DEFINE_bool("verbose", False, "On an error, also print the Python traceback.")
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
    first = str(error).strip().splitlines()
    return f"Invalid command line: {first[0] if first else type(error).__name__}"


def _load_spec(spec: str) -> None:
    cfg.load_config(spec)


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing with one-line errors: the config file and its variants are loaded first
    (absl would defer a missing file to a traceback later), then misspelt or ill-typed overrides
    are explained."""
    spec = _config_spec(argv)
    if spec is not None:
        code = cli.run(lambda: _load_spec(spec), argv=argv)
        if code:
            sys.exit(code)
    try:
        return FLAGS(argv)
    except (AttributeError, KeyError, TypeError, ValueError, flags.Error) as e:
        print(f"error: {explain_override_error(argv, e)}", file=sys.stderr)
        sys.exit(2)


def run_training() -> None:
    logging.set_verbosity(logging.WARNING)  # Orbax is chatty at INFO
    parallel.maybe_initialize_distributed()
    config = FLAGS.config
    workdir = FLAGS.workdir or default_workdir(config_flags.get_config_filename(FLAGS["config"]))
    try:
        cfg.validate_config(config)  # before any device work or compilation
    except ValueError as e:
        raise ValueError(f"invalid configuration: {e}") from e
    train.train_and_evaluate(config, workdir)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    return cli.run(run_training, argv=["--verbose"] if FLAGS.verbose else [])


def cli_main(argv: list[str] | None = None) -> None:
    """``python -m aird_jax.main ...`` (``argv`` defaults to ``sys.argv``)."""
    app.run(main, argv=argv, flags_parser=parse_flags)


if __name__ == "__main__":
    host_memory.relaunch_under_allocator()  # under tcmalloc where chosen (host_memory.py)
    cli_main()
