"""The weight-port CLIs on bad input: each fault ends in one ``error: ...`` line, exit status 2,
no traceback. Needs neither torch nor timm (a missing torch is simulated in-process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aird_jax.models import port, port_xception

ROOT = Path(__file__).resolve().parents[1]
CLIS = {
    "port_weights": lambda args: port.cli_main(["--model", "efficientnet_b0", *args]),
    "port_xception": lambda args: port_xception.cli_main(args),
}


def _one_error_line(capsys, rc: int) -> str:
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    assert "Traceback" not in err + out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("cli", CLIS)
def test_garbage_safetensors_is_one_line(cli, tmp_path, capsys):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(os.urandom(64))  # random bytes, not a header
    line = _one_error_line(
        capsys, CLIS[cli](["--checkpoint", str(bad), "--out", str(tmp_path / "o")])
    )
    assert str(bad) in line and ".safetensors" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("cli", CLIS)
def test_pth_without_torch_is_one_line(cli, tmp_path, capsys, monkeypatch):
    pth = tmp_path / "model.pth"
    pth.write_bytes(b"not read: torch is missing")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    line = _one_error_line(
        capsys, CLIS[cli](["--checkpoint", str(pth), "--out", str(tmp_path / "o")])
    )
    assert "needs torch" in line and "safetensors" in line


@pytest.mark.parametrize("cli", CLIS)
def test_missing_checkpoint_is_one_line(cli, tmp_path, capsys):
    missing = tmp_path / "nope.safetensors"
    line = _one_error_line(capsys, CLIS[cli](["--checkpoint", str(missing)]))
    assert str(missing) in line and "does not exist" in line


def test_verbose_shows_the_traceback(tmp_path, capsys):
    rc = port.cli_main(
        ["--model", "efficientnet_b0", "--checkpoint", str(tmp_path / "x.pth"), "--verbose"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.parametrize(
    "cmd",
    [
        ["scripts/port_weights.py", "--model", "efficientnet_b0"],
        ["-m", "aird_jax.models.port_xception"],
    ],
)
def test_commands_end_in_one_line(cmd, tmp_path):
    """As a user runs them: a garbage .safetensors gives one line and status 2."""
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"\x00" * 3)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    env.pop("AIRD_VERBOSE", None)
    r = subprocess.run(
        [sys.executable, *cmd, "--checkpoint", str(bad), "--out", str(tmp_path / "o")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith("error: ")


def test_port_script_names_a_shadowing_install(tmp_path):
    """scripts/port_weights.py imports the installed aird_jax; when that is not this checkout
    (here: a stand-in package first on PYTHONPATH), it says so instead of silently running it."""
    fake = tmp_path / "site" / "aird_jax"
    (fake / "models").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "models" / "__init__.py").write_text("")
    (fake / "models" / "port.py").write_text("def cli_main():\n    return 0\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    r = subprocess.run(
        [sys.executable, "scripts/port_weights.py"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("note: running the aird_jax installed at ")
    assert str(tmp_path / "site") in r.stderr and "pip install -e ." in r.stderr
