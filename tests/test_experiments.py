"""The shared pieces of aird_jax/experiments: table writer, seed statistics, LOMO table, CLIs.

Expected files are written out here by hand (not produced by the code under test).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aird_jax.experiments import lomo
from aird_jax.experiments.stats import (
    bootstrap_auc_ci,
    bootstrap_result_auc_ci,
    bootstrap_seeds_auc_ci,
    bootstrap_video_auc_ci,
    fmt_mean_std,
    mean_std,
)
from aird_jax.experiments.table_writer import (
    csv_num,
    fmt_measured,
    markdown_table,
    write_table_files,
)

ROOT = Path(__file__).resolve().parents[1]


def test_write_table_files_markdown_and_csv(tmp_path):
    md, csv_path = write_table_files(
        tmp_path / "sub" / "t1",
        ["# Title", "", "a note"],
        ["Row", "Value"],
        [["a", "1.0 ± 0.5"], ["b, c", "—"]],
        ["row", "value", "status"],
        [["a", 1.0, "ok"], ["b, c", "", "n/a"]],
    )
    assert (md, csv_path) == (tmp_path / "sub" / "t1.md", tmp_path / "sub" / "t1.csv")
    assert md.read_text() == (
        "# Title\n\na note\n| Row | Value |\n|---|---|\n| a | 1.0 ± 0.5 |\n| b, c | — |\n"
    )
    # csv quoting of the comma, \r\n line ends (the csv module's default dialect)
    assert csv_path.read_bytes() == b'row,value,status\r\na,1.0,ok\r\n"b, c",,n/a\r\n'


def test_markdown_table_without_rows():
    assert markdown_table(["A", "B", "C"], []) == ["| A | B | C |", "|---|---|---|"]


def test_csv_num():
    assert csv_num(1 / 3) == "0.333333"
    assert csv_num(None) == "" and csv_num(float("nan")) == ""
    assert csv_num(2.5, digits=1) == "2.5"


def test_fmt_measured_keeps_small_values_visible():
    """Table VI at smoke scale: 12.3 MFLOPs is 0.0123 G, not "0.00" (hand-written strings)."""
    assert fmt_measured(0.0123456, 2) == "0.0123"
    assert fmt_measured(0.00045678, 2) == "0.000457"
    assert fmt_measured(0.5, 2) == "0.500"
    assert fmt_measured(4.4712, 2) == "4.47"  # >= 1: the usual decimals
    assert fmt_measured(1234.5678, 1) == "1234.6"
    assert fmt_measured(17.54873, 3) == "17.549"
    assert fmt_measured(0.0, 2) == "0.00"
    assert fmt_measured(float("nan"), 2) == "nan"
    assert fmt_measured(-0.0123456, 2) == "-0.0123"


def test_table6_markdown_shows_small_flops(tmp_path):
    from aird_jax.experiments.reproduce import Options
    from aird_jax.experiments.tables import Line, write_table

    lines = [
        Line("Ours", "FLOPs (G)", 4.5, video=[0.0123456], unit="G"),
        Line("Ours", "MACs (G) = XLA FLOPs / 2", None, video=[0.0061728], unit="GMAC"),
        Line("Ours", "Latency (ms)", None, video=[3.14159], unit="ms"),
    ]
    opts = Options(results=tmp_path, seeds=(0,), smoke=True)
    md, _ = write_table(6, lines, opts, "Method", "Quantity")
    text = md.read_text()
    assert "| Ours | FLOPs (G) | 4.5 | 0.0123 | G |" in text
    assert "| Ours | MACs (G) = XLA FLOPs / 2 | — | 0.00617 | GMAC |" in text
    assert "| Ours | Latency (ms) | — | 3.14 | ms |" in text


def test_mean_std_over_seeds():
    assert mean_std([1.0, 2.0, 6.0]) == pytest.approx((3.0, np.sqrt(7.0)))  # ddof 1
    m, s = mean_std([4.0])
    assert m == 4.0 and np.isnan(s)
    assert all(np.isnan(v) for v in mean_std([]))
    assert fmt_mean_std([1.0, 2.0, 6.0]) == "3.0 ± 2.6"
    assert fmt_mean_std([91.25], digits=2) == "91.25"
    assert fmt_mean_std([1.0, float("nan")]) == "nan"
    assert fmt_mean_std([]) == "nan"


def test_bootstrap_auc_ci():
    labels = np.array([0, 0, 0, 1, 1, 1])
    # separable: every stratified resample keeps AUC 100
    assert bootstrap_auc_ci(labels, np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]), n=50) == (
        100.0,
        100.0,
    )
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 200)
    s = rng.normal(size=400) + y
    lo, hi = bootstrap_auc_ci(y, s, n=200)
    assert lo < hi and lo < 76.0 < hi  # AUC of a unit shift ~ Phi(1/sqrt 2) = 76%
    assert (lo, hi) == bootstrap_auc_ci(y, s, n=200)  # seeded: same interval again


def _naive_video_bootstrap(labels, scores, video_ids, n, seed):
    """The video (cluster) bootstrap written out with loops, AUC from sklearn: videos numbered by
    first appearance, draws rng.choice(fake videos) then rng.choice(real videos)."""
    from sklearn.metrics import roc_auc_score

    frames: dict = {}  # video id -> frame indices, in order of first appearance
    for i, v in enumerate(video_ids):
        frames.setdefault(v, []).append(i)
    videos = list(frames)
    pos = np.array([k for k, v in enumerate(videos) if labels[frames[v][0]] == 1])
    neg = np.array([k for k, v in enumerate(videos) if labels[frames[v][0]] == 0])
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(n):
        chosen = list(rng.choice(pos, len(pos))) + list(rng.choice(neg, len(neg)))
        y, s = [], []
        for k in chosen:
            for i in frames[videos[k]]:
                y.append(labels[i])
                s.append(scores[i])
        aucs.append(roc_auc_score(y, s))
    return tuple(100 * float(q) for q in np.percentile(aucs, [2.5, 97.5]))


def _clustered(n_videos=24, seed=3):
    """Videos of 1..9 frames, interleaved, with a strong per-video offset (correlated frames)."""
    rng = np.random.default_rng(seed)
    vids, labels, scores = [], [], []
    for v in range(n_videos):
        y, offset = v % 2, rng.normal(scale=1.5)
        for _ in range(int(rng.integers(1, 10))):
            vids.append(f"vid{v:02d}")
            labels.append(y)
            scores.append(0.5 * y + offset + 0.2 * rng.normal())
    order = rng.permutation(len(vids))  # frames of a video are not contiguous
    return (np.array(labels)[order], np.array(scores)[order], np.array(vids)[order])


def test_video_bootstrap_matches_a_naive_loop():
    y, s, v = _clustered()
    got = bootstrap_video_auc_ci(y, s, v, n=200, seed=5)
    assert got == pytest.approx(_naive_video_bootstrap(y, s, v, n=200, seed=5), abs=1e-9)


def test_seed_mean_bootstrap_matches_a_naive_loop(tmp_path):
    """[S, N] scores: each resample's statistic is the mean of the S seeds' AUCs on the same
    videos; written out with loops and sklearn, and through the scores files of a study row."""
    from sklearn.metrics import roc_auc_score

    y, s, v = _clustered()
    rng = np.random.default_rng(9)
    seeds = np.stack([s, s + rng.normal(size=s.size), -0.3 * s + rng.normal(size=s.size)])
    frames: dict = {}
    for i, vid in enumerate(v):
        frames.setdefault(vid, []).append(i)
    videos = list(frames)
    pos = np.array([k for k, vid in enumerate(videos) if y[frames[vid][0]] == 1])
    neg = np.array([k for k, vid in enumerate(videos) if y[frames[vid][0]] == 0])
    draw = np.random.default_rng(4)
    aucs = []
    for _ in range(150):
        chosen = list(draw.choice(pos, len(pos))) + list(draw.choice(neg, len(neg)))
        idx = [i for k in chosen for i in frames[videos[k]]]
        aucs.append(np.mean([roc_auc_score(y[idx], row[idx]) for row in seeds]))
    want = tuple(100 * float(q) for q in np.percentile(aucs, [2.5, 97.5]))
    assert bootstrap_video_auc_ci(y, seeds, v, n=150, seed=4) == pytest.approx(want, abs=1e-9)
    files = []
    for k, row in enumerate(seeds):
        files.append(tmp_path / f"seed{k}.npz")
        np.savez(files[-1], labels=y, scores=row, video_ids=v)
    assert bootstrap_seeds_auc_ci(files, n=150, seed=4) == pytest.approx(want, abs=1e-9)
    np.savez(files[-1], labels=y, scores=seeds[-1], video_ids=v[::-1])
    with pytest.raises(ValueError, match="another test set"):
        bootstrap_seeds_auc_ci(files, n=10)


def test_video_bootstrap_with_one_frame_per_video_is_the_frame_bootstrap():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=60)
    s = rng.normal(size=60) + y
    vids = np.array([f"img{i}" for i in rng.permutation(60)])  # any unique ids
    assert bootstrap_video_auc_ci(y, s, vids, n=300, seed=7) == bootstrap_auc_ci(
        y, s, n=300, seed=7
    )


def test_video_bootstrap_is_wider_than_the_frame_bootstrap_for_correlated_frames():
    """Frames sharing a per-video offset carry less information than their count says."""
    y, s, v = _clustered(n_videos=40, seed=11)
    lo_v, hi_v = bootstrap_video_auc_ci(y, s, v, n=300)
    lo_f, hi_f = bootstrap_auc_ci(y, s, n=300)
    assert hi_v - lo_v > 1.3 * (hi_f - lo_f)


def test_video_bootstrap_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="both real and fake"):
        bootstrap_video_auc_ci([0, 1, 0], [0.1, 0.2, 0.3], ["a", "a", "b"])
    with pytest.raises(ValueError, match="real and fake videos"):
        bootstrap_video_auc_ci([1, 1], [0.1, 0.2], ["a", "b"])
    y, s, v = _clustered()
    np.savez(tmp_path / "sc.npz", labels=y, scores=s, video_ids=v)
    res = {"files": {"scores": str(tmp_path / "sc.npz")}}
    assert bootstrap_result_auc_ci(res, n=50) == bootstrap_video_auc_ci(y, s, v, n=50)


def test_lomo_table(tmp_path):
    one = {
        "variant": "late_supcon", "seeds": [0], "seen_auc": [91.25], "heldout_auc": [70.5],
        "seen_eer": [8.0], "heldout_eer": [30.0], "seen_acc": [90.0], "heldout_acc": [65.0],
        "n_seen": ["100 (50 fake)"], "n_heldout": ["60 (30 fake)"], "val_auc": [93.0],
        "step": [120], "train_s": [33.3], "seen_ci": [(89.0, 93.14)], "heldout_ci": [(65.2, 75.0)],
    }  # fmt: skip
    two = {
        "variant": "rgb_only", "seeds": [0, 1], "seen_auc": [90.0, 92.0],
        "heldout_auc": [70.0, 71.0], "seen_eer": [8.0, 9.0], "heldout_eer": [30.0, 31.0],
        "seen_acc": [90.0, 91.0], "heldout_acc": [65.0, 66.0], "n_seen": ["10 (5 fake)"] * 2,
        "n_heldout": ["6 (3 fake)"] * 2, "val_auc": [93.0, 94.0], "step": [120, 150],
        "train_s": [33.3, 40.6], "seen_ci": [(1.0, 2.0)] * 2, "heldout_ci": [(3.0, 4.0)] * 2,
    }  # fmt: skip
    md, csv_path = lomo.write_tables(tmp_path, "NT", ["DF", "F2F"], [one, two], "NOTE")
    assert md == tmp_path / "NT.md" and csv_path == tmp_path / "NT.csv"
    lines = md.read_text().splitlines()
    assert lines[:4] == [
        "# Leave-one-method-out: held out NT (trained on real + DF+F2F)",
        "",
        "NOTE",
        "",
    ]
    assert lines[6:] == [
        "| Variant | Seen methods test AUC (DF+F2F + real) | Held-out test AUC (NT + real) | Drop "
        "| Seeds | Best step | Train time (s) |",
        "|---|---|---|---|---|---|---|",
        # one seed: the bootstrap interval; drop = 70.5 - 91.25
        "| late_supcon | 91.2 [89.0, 93.1] | 70.5 [65.2, 75.0] | -20.8 | 0 | 120 | 33 |",
        # two seeds: mean ± sample std; drops -20 and -21 -> -20.5 ± 0.7
        "| rgb_only | 91.0 ± 1.4 | 70.5 ± 0.7 | -20.5 ± 0.7 | 0,1 | 120,150 | 33,41 |",
    ]
    rows = csv_path.read_text().splitlines()
    assert len(rows) == 4  # header + one line per seed
    assert rows[1] == (
        "NT,late_supcon,0,DF+F2F,91.2500,70.5000,89.00-93.14,65.20-75.00,8.0000,30.0000,"
        "90.0000,65.0000,100 (50 fake),60 (30 fake),93.0000,120,33.3"
    )
    assert rows[3].startswith("NT,rgb_only,1,DF+F2F,92.0000,71.0000,")


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_clis_run_from_a_checkout(tmp_path):
    """The scripts and ``python -m`` reach the package without sys.path edits."""
    r = _run(["scripts/leave_one_method_out.py", "--faces", str(tmp_path), "--holdout", "NT"])
    assert r.returncode == 2 and "must hold real/ and fake/<method>/" in r.stderr, r.stderr
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    r = _run(["-m", "aird_jax.experiments.reproduce", "--help"])
    assert r.returncode == 0 and "--table" in r.stdout and "--smoke" in r.stdout, r.stderr
    r = _run(["scripts/reproduce.py", "--table", "3", "--seeds", "0", "0"])
    assert r.returncode == 2 and "--seeds has duplicates" in r.stderr, r.stderr
    r = _run(["scripts/reproduce.py", "--table", "6", "--smoke", "--set", "nope.key=1"])
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: bad override nope.key=1")


def _chatty_trainer(events: list):
    """Stand-in for train.train_and_evaluate: prints what train.py prints, nothing trained."""

    def trainer(cfg, workdir):
        events.append("trainer started")
        print("aird_jax: variant late_supcon | 1 cpu device(s) | workdir", workdir)
        for k in (1, 2):
            print(f"epoch {k}/2: train loss 0.{k}000 | val frame AUC 0.5000 video AUC 0.5000")
            print("a detail that stays in the log file only")
        return {"stand_in": True}

    return trainer


def test_training_runs_announce_themselves_and_their_epochs(tmp_path, capsys):
    """reproduce/LOMO runs print, before training, which run and where its log goes, then one
    line per epoch while training quietly (log=print, as the CLIs do)."""
    from aird_jax.experiments.runs import OURS, Options, ensure_trained

    events: list = []
    opts = Options(results=tmp_path, seeds=(0,), smoke=True, trainer=_chatty_trainer(events))
    log_path = tmp_path / "runs" / "late_supcon_seed0" / "train_log.txt"

    def log(line):
        events.append(line)
        print(line)

    ensure_trained(OURS, 0, opts, log, position=(1, 3))
    start = f"  [1/3] training late_supcon seed 0 -> {log_path}"
    assert events[0].startswith(start) and events[1] == "trainer started"
    epochs = [e for e in events if ": epoch " in e]
    assert [e.split(": train loss")[0].strip() for e in epochs] == [
        "late_supcon seed 0: epoch 1/2",
        "late_supcon seed 0: epoch 2/2",
    ]
    out = capsys.readouterr().out
    assert out.count("late_supcon seed 0: epoch 1/2: train loss 0.1000") == 1
    assert "detail" not in out and start in out and "late_supcon seed 0 done in" in out
    logged = log_path.read_text()  # the full output, without the echoed progress lines
    assert logged.count("epoch 1/2: train loss") == 1 and logged.count("detail") == 2
    assert "seed 0: epoch" not in logged

    events.clear()  # finished: reused, nothing trained, one line
    ensure_trained(OURS, 0, opts, log, position=(1, 3))
    assert events == ["  [1/3] reuse   runs/late_supcon_seed0 (finished)"]
