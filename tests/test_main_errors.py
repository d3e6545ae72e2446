"""``python -m aird_jax.main``: every user-side fault ends in one ``error:`` line, exit status 2,
no Python traceback, and nothing left behind that would refuse the corrected command.

Each case runs the real entry point in a child process. Faults that need a run (a full disk
during a save, a diverging run) use the in-memory ToyData of test_train in place of the pipeline;
the full disk is simulated by Orbax's save raising ENOSPC, as the OS would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMOKE = "--config=configs/late_supcon.py:smoke,freq_only"

DRIVER = textwrap.dedent(
    """
    import errno, os, sys
    import orbax.checkpoint as ocp
    import test_train
    from aird_jax import main, train

    mode, argv = sys.argv[1], ["aird_jax.main", *sys.argv[2:]]
    if mode in ("enospc", "diverge"):
        train.pipeline = test_train.ToyData(nan_from_step=1 if mode == "diverge" else None)
    if mode == "enospc":
        def full(self, step, *a, **k):
            where = f"{getattr(self, 'directory', 'checkpoints')}/{step}"
            raise OSError(errno.ENOSPC, "No space left on device", where)
        ocp.CheckpointManager.save = full
    if mode == "readonly":  # as on a read-only mount (root ignores a directory's mode bits)
        ro, real_access = os.environ["RO_DIR"], os.access

        def access(p, m, **k):
            return False if str(p) == ro and m & os.W_OK else real_access(p, m, **k)

        os.access = access
    sys.argv = argv  # config_flags reads the overrides from sys.argv
    main.cli_main(argv)
    """
)


def run_main(args, *, mode="plain", extra_env=None):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("AIRD_VERBOSE", None)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), str(REPO / "tests"), env.get("PYTHONPATH")])
    )
    # The child inherits the session's compilation cache (tests/conftest.py).
    env.update(extra_env or {})
    r = subprocess.run(
        [sys.executable, "-c", DRIVER, mode, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return r


def one_error(r) -> str:
    """The one ``error:`` line; no traceback anywhere, exit status 2."""
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out[-3000:]
    errors = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1, r.stderr[-3000:]
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    return errors[0]


def test_missing_config_file():
    line = one_error(run_main(["--config=configs/nope.py"]))
    assert "config file 'configs/nope.py' not found" in line


def test_unknown_variant():
    line = one_error(run_main(["--config=configs/late_supcon.py:bogus"]))
    assert "unknown config variant(s) ['bogus']" in line and "quickstart" in line


def test_unknown_dataset_name(tmp_path):
    wd = tmp_path / "run"
    line = one_error(run_main([SMOKE, "--config.data.name=nosuch", f"--workdir={wd}"]))
    assert "Unknown dataset 'nosuch'" in line and "ffpp" in line
    assert not (wd / "config.json").exists()


def test_dataset_absent_keeps_its_instructions(tmp_path):
    wd, root = tmp_path / "run", tmp_path / "data"
    root.mkdir()
    args = [SMOKE, "--config.data.name=ffpp", "--config.data.config=c23"]
    r = run_main([*args, f"--config.data.root={root}", f"--workdir={wd}"])
    line = one_error(r)
    assert "Dataset 'ffpp'" in line
    assert f"manual_dir={root}/manual/ffpp" in r.stderr  # DatasetMissingError's own text
    # Nothing recorded: the same workdir takes the corrected command.
    assert not (wd / "config.json").exists()


def test_workdir_is_a_file(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    assert "is a file, not a directory" in one_error(run_main([SMOKE, f"--workdir={f}"]))


def test_workdir_under_a_file(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    line = one_error(run_main([SMOKE, f"--workdir={f}/run"]))
    assert f"lies under {f}, which is a file" in line


def test_workdir_read_only(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    r = run_main([SMOKE, f"--workdir={ro}/run"], mode="readonly", extra_env={"RO_DIR": str(ro)})
    assert f"{ro} is read-only" in one_error(r)
    assert not (ro / "run").exists()


def test_disk_full_during_a_save(tmp_path):
    wd = tmp_path / "run"
    r = run_main([SMOKE, f"--workdir={wd}"], mode="enospc")
    line = one_error(r)
    assert line.startswith("error: the disk is full while writing ")
    assert str(wd / "checkpoints") in line


def test_divergence_stop(tmp_path):
    wd = tmp_path / "run"
    r = run_main([SMOKE, f"--workdir={wd}"], mode="diverge")
    line = one_error(r)
    assert "training diverged: non-finite training loss/gradient at step 1" in line
    assert "No checkpoint had been written" in line
