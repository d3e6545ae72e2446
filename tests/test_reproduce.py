"""The reproduction harness (aird_jax/experiments; scripts/reproduce.py is its CLI).

Two layers, to stay inside the CPU test budget (a tiny smoke training costs ~30-60 s of XLA
compilation, and Tables I-V need 11 distinct models):

* every table 1-5 through the real harness code with 3 seeds, but with training and evaluation
  replaced by deterministic stand-ins (injection points of the harness). Each figure is checked
  against a value computed here independently from the stand-in's outputs (mean, sample std,
  Drop/Delta/best-baseline), every paper row must be present with the paper's figure,
  unregistered methods must say "not implemented", and a second run must reproduce the files
  without re-training;
* end to end for real in --smoke mode: Table V (trains the full method and the Xception
  baseline, evaluates them under every degradation; numbers recomputed with sklearn from the
  saved scores; a second run re-evaluates from the checkpoints without re-training and gives
  identical files) and Table VI (measured counts and timings).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import statistics
from pathlib import Path

import numpy as np
import pytest
from _eval_shared import results_dir, smoke_table
from sklearn.metrics import roc_auc_score

from aird_jax.experiments import paper_tables, preflight, reproduce, runs, tables
from aird_jax.experiments.reproduce import Options, ReproduceError
from aird_jax.experiments.runs import OURS, ensure_trained, run_config

SEEDS = (0, 1, 2)


def _rows(path) -> dict[tuple[str, str], dict]:
    with open(path, newline="") as f:
        return {(r["row"], r["column"]): r for r in csv.DictReader(f)}


def _check_complete(n: int, md_path: Path, csv_path: Path) -> dict[tuple[str, str], dict]:
    """Every paper row/column present with the paper's figure; ours finite or explained."""
    md, rows = md_path.read_text(), _rows(csv_path)
    expected = tables.paper_rows(n) if n != 6 else paper_tables.TABLE_VI.rows
    for row, cols in expected.items():
        assert f"| {row} |" in md, f"row {row!r} missing from table{n}.md"
        for col, val in cols.items():
            assert (row, col) in rows, f"({row}, {col}) missing from table{n}.csv"
            if val is not None:  # transcribed, never measured
                assert float(rows[(row, col)]["paper"]) == pytest.approx(val)
    for r in rows.values():
        if r["status"] == "ok":
            assert math.isfinite(float(r["ours_video_mean"])), r
        else:
            assert r["status"] in ("not implemented", "n/a") and r["ours_video_mean"] == "", r
    assert "NOT trustworthy" in md
    if n != 6:
        assert "VIDEO level" in md and "FRAME level" in md
    return rows


# ------------------------------------------------------------------ stand-in train / evaluate
def _fake(key: str, seed: int, role: str, deg, level: str, metric: str) -> float:
    h = hashlib.sha256(f"{key}|{seed}|{role}|{deg}|{level}|{metric}".encode()).digest()
    return int.from_bytes(h[:4], "little") / 2**32


def _split_workdir(workdir: Path) -> tuple[str, int]:
    key, seed = workdir.name.rsplit("_seed", 1)
    return key, int(seed)


class FakeEvaluator:
    calls: list = []

    def __init__(self, opts, log):
        pass

    def result(self, workdir, role, degradation):
        key, seed = _split_workdir(Path(workdir))
        FakeEvaluator.calls.append((key, seed, role, degradation))
        return {
            "metrics": {
                lvl: {m: _fake(key, seed, role, degradation, lvl, m) for m in ("auc", "acc", "eer")}
                for lvl in ("frame", "video")
            }
        }


def _expect(cells, level="video"):
    """mean, sample std over SEEDS of a per-seed value function (percent)."""
    vals = [100 * cells(s, level) for s in SEEDS]
    return statistics.mean(vals), statistics.stdev(vals)


def _m(key, role, metric="auc", deg=None):
    return lambda s, lvl: _fake(key, s, role, deg, lvl, metric)


FAKE_REGISTRY = {"detector", "mesonet"}  # Xception & co. unregistered: "not implemented"


def _fake_reproduce(n, opts):
    with pytest.MonkeyPatch.context() as mp:
        for module in (runs, tables):  # what is built, and what counts as implemented
            mp.setattr(module, "registered_models", lambda: sorted(FAKE_REGISTRY))
        return reproduce.reproduce(n, opts, log=lambda s: None)


@pytest.fixture(scope="module")
def fake_tables(tmp_path_factory):
    trained: list[tuple] = []

    def trainer(cfg, workdir):
        trained.append(
            (
                Path(workdir).name,
                int(cfg.seed),
                cfg.model.name,
                cfg.model.fusion,
                float(cfg.loss.lam),
                int(cfg.model.dct_cutoff),
            )
        )
        return {"stand_in": True}

    res = tmp_path_factory.mktemp("fake_results")
    opts = Options(
        results=res, seeds=SEEDS, smoke=True, trainer=trainer, evaluator_cls=FakeEvaluator
    )
    out = {n: _fake_reproduce(n, opts) for n in (1, 2, 3, 4, 5)}
    return {"out": out, "trained": trained, "opts": opts}


def close(expected):
    return pytest.approx(expected, abs=1e-4)  # the CSV keeps 6 decimals


def _ours(rows, row, col, level="video"):
    r = rows[(row, col)]
    return float(r[f"ours_{level}_mean"]), float(r[f"ours_{level}_std"])


def test_all_tables_assembled_from_the_right_runs(fake_tables):
    out = fake_tables["out"]
    rows = {n: _check_complete(n, out[n]["md"], out[n]["csv"]) for n in out}

    # Table I: in-domain metrics of the right run; the paper's EfficientNet-B4 is our RGB stream.
    for lvl in ("video", "frame"):
        assert _ours(rows[1], "Ours", "EER", lvl) == close(
            _expect(_m("late_supcon", "indomain", "eer"), lvl)
        )
    assert _ours(rows[1], "EfficientNet-B4", "Acc") == close(
        _expect(_m("rgb_only", "indomain", "acc"))
    )
    assert _ours(rows[1], "MesoNet", "AUC") == close(_expect(_m("mesonet", "indomain")))
    for row in ("Xception", "F3-Net", "SPSL", "Face X-ray"):  # not registered here
        assert rows[1][(row, "AUC")]["status"] == "not implemented"
    # Table II: Drop = cross AUC - in-domain AUC, per seed; best baseline = per-seed max.
    drop = lambda s, lvl: (
        _fake("late_supcon", s, "celebdf", None, lvl, "auc")
        - _fake(  # noqa: E731
            "late_supcon", s, "indomain", None, lvl, "auc"
        )
    )
    assert _ours(rows[2], "Ours", "Drop") == close(_expect(drop))
    best = lambda s, lvl: max(
        _fake(k, s, "dfdc", None, lvl, "auc")  # noqa: E731
        for k in ("rgb_only", "mesonet")
    )
    assert _ours(rows[2], "Best baseline (DFDC Preview)", "AUC") == close(_expect(best))
    assert _ours(rows[2], "Ours (DeeperForensics)", "AUC") == close(
        _expect(_m("late_supcon", "deeperforensics"))
    )
    # Table III: the ablation runs; Delta against the full method; em dash row is n/a.
    for row, key in (
        ("RGB Only", "rgb_only"),
        ("Frequency Only", "freq_only"),
        ("Both (Early Fusion)", "early_fusion"),
        ("Both (Late Fusion)", "late_fusion"),
        ("Late + Contrastive", "late_supcon"),
    ):
        assert _ours(rows[3], row, "AUC") == close(_expect(_m(key, "celebdf")))
    delta = lambda s, lvl: (
        _fake("freq_only", s, "celebdf", None, lvl, "auc")
        - _fake(  # noqa: E731
            "late_supcon", s, "celebdf", None, lvl, "auc"
        )
    )
    assert _ours(rows[3], "Frequency Only", "Delta") == close(_expect(delta))
    assert rows[3][("Late + Contrastive", "Delta")]["status"] == "n/a"
    # Table IV: cutoff k run (k = 4 is the main run).
    for row, key in (
        ("2 (keep most)", "late_supcon_cutoff2"),
        ("4 (ours)", "late_supcon"),
        ("6 (aggressive)", "late_supcon_cutoff6"),
    ):
        assert _ours(rows[4], row, "FF++ AUC") == close(_expect(_m(key, "indomain")))
        assert _ours(rows[4], row, "Celeb-DF AUC") == close(_expect(_m(key, "celebdf")))
    # Table V: degraded cross-dataset AUC; Xception not registered here.
    for row, deg in (
        ("None", None),
        ("JPEG (Q=50)", "jpeg50"),
        ("Blur + JPEG", "blur_jpeg"),
        ("JPEG (Q=20) [text, VI-B]", "jpeg20"),
    ):
        assert _ours(rows[5], row, "Ours") == close(_expect(_m("late_supcon", "celebdf", deg=deg)))
        assert rows[5][(row, "Xception")]["status"] == "not implemented"
    # The markdown shows the same mean ± std and the seeds.
    m, sd = _ours(rows[3], "RGB Only", "AUC")
    assert f"| RGB Only | AUC | 67.2 | {m:.1f} ± {sd:.1f} |" in out[3]["md"].read_text()


def test_runs_trained_once_with_the_right_configs(fake_tables):
    trained = fake_tables["trained"]
    names = [t[0] for t in trained]
    assert len(names) == len(set(names)), "a run was trained twice"
    by_name = {t[0]: t for t in trained}
    for s in SEEDS:
        assert by_name[f"late_supcon_seed{s}"][1:] == (s, "detector", "late", 0.5, 4)
        assert by_name[f"freq_only_seed{s}"][3:5] == ("freq_only", 0.0)
        assert by_name[f"late_fusion_seed{s}"][3:5] == ("late", 0.0)
        assert by_name[f"late_supcon_cutoff3_seed{s}"][5] == 3
        assert by_name[f"mesonet_seed{s}"][2] == "mesonet"
    # 9 detector variants + MesoNet, 3 seeds each; nothing for unregistered baselines.
    assert len(trained) == 10 * len(SEEDS)


def test_second_run_reuses_and_reproduces(fake_tables):
    opts = fake_tables["opts"]
    before = {n: (o["md"].read_text(), o["csv"].read_text()) for n, o in fake_tables["out"].items()}
    n_trained = len(fake_tables["trained"])
    for n in (1, 2, 3, 4, 5):
        out = _fake_reproduce(n, opts)
        assert (out["md"].read_text(), out["csv"].read_text()) == before[n]
    assert len(fake_tables["trained"]) == n_trained  # finished runs reused, none re-trained


# ------------------------------------------------------------------------ real, end to end
def test_smoke_table5_end_to_end():
    out = smoke_table(5)
    rows = _check_complete(5, out["md"], out["csv"])
    registry = tables.registered_models()
    xc = (
        "ok"
        if runs.BASELINES["Xception"].model_for(True, registry) in registry
        else ("not implemented")
    )
    assert {rows[(r, "Xception")]["status"] for r in tables.DEGRADATION_ROWS} == {xc}
    assert {rows[(r, "Ours")]["status"] for r in tables.DEGRADATION_ROWS} == {"ok"}
    # Each figure traces to the per-frame scores saved by the evaluation (sklearn recomputes).
    ev_dir = results_dir() / "runs" / "late_supcon_seed0" / "eval"
    for row, deg in tables.DEGRADATION_ROWS.items():
        (res,) = [
            j
            for j in map(lambda p: json.loads(p.read_text()), ev_dir.glob("*.json"))
            if j["split"] == "test_heldout" and j["degradation"] == deg
        ]
        sc = np.load(res["files"]["scores"])
        frame = float(rows[(row, "Ours")]["ours_frame_mean"])
        assert frame == pytest.approx(100 * roc_auc_score(sc["labels"], sc["scores"]), abs=1e-4)
        acc: dict[str, list] = {}
        for v, y, s in zip(sc["video_ids"], sc["labels"], sc["scores"]):
            acc.setdefault(str(v), [int(y), []])[1].append(float(s))
        video = float(rows[(row, "Ours")]["ours_video_mean"])
        assert video == pytest.approx(
            100
            * roc_auc_score([a[0] for a in acc.values()], [np.mean(a[1]) for a in acc.values()]),
            abs=1e-4,
        )
    # Degradations really change the input: not every degraded AUC equals the clean one.
    aucs = {rows[(r, "Ours")]["ours_frame_mean"] for r in tables.DEGRADATION_ROWS}
    assert len(aucs) > 1


def test_smoke_second_run_reevaluates_without_training(capsys):
    first = smoke_table(5)["csv"].read_text()
    ckpts = [p for p in (results_dir() / "runs").glob("*/checkpoints/**/*") if p.is_file()]
    mtimes = {p: os.stat(p).st_mtime_ns for p in ckpts}
    assert mtimes, "no checkpoint files found"
    rc = reproduce.main(
        ["--table", "5", "--smoke", "--results", str(results_dir()), "--seeds", "0", "--reevaluate"]
    )
    assert rc == 0
    assert (results_dir() / "table5.csv").read_text() == first
    out = capsys.readouterr().out
    assert "reuse" in out and "train " not in out and "eval " in out
    assert all(os.stat(p).st_mtime_ns == t for p, t in mtimes.items())


def test_table6_measured():
    out = smoke_table(6)
    rows = _check_complete(6, out["md"], out["csv"])
    ours = {col: r for (row, col), r in rows.items() if row == "Ours"}
    assert all(r["status"] == "ok" for r in ours.values())
    registry = tables.registered_models()
    f3 = runs.BASELINES["F3-Net"].model_for(True, registry) in registry
    assert rows[("F3-Net", "Params (M)")]["status"] == ("ok" if f3 else "not implemented")
    # Parameter count: an independent count of the same model's parameter shapes.
    import jax

    from aird_jax.models import build_model

    cfg = run_config(OURS, 0, smoke=True)
    model = build_model(cfg.model)
    s = int(cfg.data.image_size)
    shapes = jax.eval_shape(
        lambda: model.init(
            {"params": jax.random.key(0), "dropout": jax.random.key(1)},
            jax.numpy.zeros((1, s, s, 3)),
            train=False,
        )
    )
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(shapes["params"]))
    assert float(ours["Params (M)"]["ours_video_mean"]) == pytest.approx(n_params / 1e6, rel=1e-5)
    flops = float(ours["FLOPs (G)"]["ours_video_mean"])
    assert flops > 0
    assert float(ours["MACs (G) = XLA FLOPs / 2"]["ours_video_mean"]) == pytest.approx(flops / 2)
    assert float(ours["Latency (ms)"]["ours_video_mean"]) > 0
    assert "Measured on this device" in out["md"].read_text()


# ---------------------------------------------------------------------------- bad input
def test_run_with_other_config_is_refused():
    opts = Options(results=results_dir(), seeds=(0,), smoke=True)
    wd = ensure_trained(OURS, 0, opts, log=lambda s: None)
    marker = json.loads((wd / "reproduce_run.json").read_text())
    other = Options(
        results=results_dir(),
        seeds=(0,),
        smoke=True,
        overrides=(("optim.lr", marker["config"]["optim"]["lr"] * 2),),
    )
    with pytest.raises(ReproduceError, match="different config"):
        ensure_trained(OURS, 0, other, log=lambda s: None)


def test_missing_real_dataset_is_explained(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AIRD_DATA_DIR", str(tmp_path / "data"))
    rc = reproduce.main(["--table", "3", "--results", str(tmp_path / "res"), "--seeds", "0"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "ffpp" in err and "data/README.md" in err and "--smoke" in err
    assert not (tmp_path / "res" / "runs").exists()  # nothing trained before the check


def test_missing_pretrained_weights_are_explained(tmp_path):
    opts = Options(
        results=tmp_path,
        seeds=(0,),
        smoke=False,
        overrides=(("model.pretrained", str(tmp_path / "nope.msgpack")),),
    )
    with pytest.raises(ReproduceError, match="port"):
        preflight.check_pretrained([OURS], opts, 1)
