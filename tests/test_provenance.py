"""The commit a run records (config.read_git_commit): HEAD, ``+dirty`` only for code edits."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from aird_jax.config import read_git_commit


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")
def test_commit_is_head_and_dirty_only_for_code_edits(tmp_path):
    root = tmp_path / "repo"
    for rel in ("aird_jax/a.py", "configs/c.py", "results/t.md", "README.md"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    head = _git(root, "rev-parse", "HEAD")  # the reference: git itself
    assert read_git_commit(root) == head
    # A study rewrites its result tables while it trains: not an edit of the code.
    (root / "results/t.md").write_text("new numbers\n")
    (root / "README.md").write_text("new text\n")
    assert read_git_commit(root) == head
    (root / "configs/c.py").write_text("y\n")
    assert read_git_commit(root) == head + "+dirty"
    assert read_git_commit(tmp_path / "not_a_repo") == "unknown"
