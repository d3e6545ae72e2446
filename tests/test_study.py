"""The real-data study (aird_jax.experiments.study) at its smoke scale on a tiny face folder."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from aird_jax.experiments import study as study_mod
from aird_jax.experiments import study_tables
from aird_jax.experiments.study import Study, StudyOptions
from aird_jax.experiments.study_tables import CUTOFFS, LEARNED, LOMO_LEARNED, SPECTRAL

METHODS = ("A", "B")


def _folder(top: Path) -> Path:
    """real/ + fake/{A,B}/ of random 40-px JPEGs; train_/test_ prefixes as ffpp_faces299."""
    rng = np.random.default_rng(0)
    plan = {"real": (48, 10), "fake/A": (24, 5), "fake/B": (24, 5)}
    for sub, (n_train, n_test) in plan.items():
        (top / sub).mkdir(parents=True)
        for prefix, n in (("train", n_train), ("test", n_test)):
            for i in range(n):
                img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
                cv2.imwrite(str(top / sub / f"{prefix}_{i}.jpg"), img)
    return top


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    return _folder(tmp_path_factory.mktemp("faces"))


def _study(
    faces: Path, tmp: Path, parts: tuple[str, ...], seeds=(0, 1), holdouts=(), variants=()
) -> Study:
    so = StudyOptions(
        faces=faces, scale="smoke", seeds=seeds, runs=tmp / "runs", results=tmp / "res",
        parts=parts, holdouts=holdouts, variants=variants,
    )  # fmt: skip
    return Study(so, lambda s: None)


def test_job_order_is_most_informative_first_and_each_run_once(faces, tmp_path):
    s = _study(faces, tmp_path, ("table3", "table5", "table4", "lomo"))
    jobs = [(j.part, j.spec.key, j.seed) for j in s.jobs_resolved()]
    first = [(("table3", v, 0)) for v in (*LEARNED, *SPECTRAL)]
    assert jobs[: len(first)] == first
    cut = [("table4", f"freq_only_cutoff{k}", 0) for k in CUTOFFS if k != 4]
    assert jobs[len(first) : len(first) + len(cut)] == cut  # cutoff 4 = Table III's freq_only
    done = len(first) + len(cut)
    # The rows the study needs on every seed before the LOMO; the fusion rows' seeds last.
    seed1 = [("table3", v, 1) for v in (*LOMO_LEARNED, *SPECTRAL)]
    assert jobs[done : done + len(seed1)] == seed1
    done += len(seed1)
    n_lomo = len(METHODS) * (len(LOMO_LEARNED) + 1)
    lomo = jobs[done : done + n_lomo]
    assert {p for p, _, _ in lomo} == {"lomo"}
    assert {k.split("_without-")[1] for _, k, _ in lomo} == set(METHODS)
    later = jobs[done + n_lomo :]
    assert later == [("table3", v, 1) for v in LEARNED if v not in LOMO_LEARNED]
    assert len(set(jobs)) == len(jobs)


def test_lomo_alone_fits_the_spectral_baselines_it_chooses_from_first(faces, tmp_path):
    # Without the seed-0 Table III fits, best_spectral() had nothing to choose on and LOMO's
    # spectral row silently became the first baseline.
    s = _study(faces, tmp_path, ("lomo",), holdouts=("B",))
    jobs = [(j.part, j.spec.key, j.seed) for j in s.jobs_resolved()]
    fits = [("table3", m, 0) for m in SPECTRAL]
    assert jobs[: len(fits)] == fits
    lomo = jobs[len(fits) :]
    assert [k for _, k, _ in lomo][: len(LOMO_LEARNED)] == [f"{v}_without-B" for v in LOMO_LEARNED]
    assert len(lomo) == len(LOMO_LEARNED) + 1 and {p for p, _, _ in lomo} == {"lomo"}


def test_variants_trains_only_the_named_learned_rows_in_every_part(faces, tmp_path):
    s = _study(faces, tmp_path, ("table3", "table4", "lomo"), variants=("rgb_only", "late_fusion"))
    jobs = [(j.part, j.spec.key, j.seed) for j in s.jobs_resolved()]
    base = [(p, k.split("_without-")[0], k) for p, k, _ in jobs]
    learned = {b for _, b, _ in base if b not in SPECTRAL}
    assert learned == {"rgb_only", "late_fusion"}  # no freq_only, hence no Table IV cutoffs
    lomo = [k for p, b, k in base if p == "lomo" and b not in SPECTRAL]
    assert lomo == ["rgb_only_without-A", "rgb_only_without-B"]  # late_fusion has no LOMO row
    assert ("table3", "late_fusion", 1) in jobs and ("table3", "late_supcon", 0) not in jobs
    # Without --variants: every learned row, as before.
    every = {j.spec.key for j in _study(faces, tmp_path, ("table3",)).jobs_resolved()}
    assert set(LEARNED) <= every


def test_unknown_holdout_is_one_line_before_any_training(faces, tmp_path, capsys):
    code = study_mod.main(
        ["--faces", str(faces), "--scale", "smoke", "--runs", str(tmp_path / "r"),
         "--results", str(tmp_path / "res"), "--parts", "lomo", "--holdouts", "C"]
    )  # fmt: skip
    # (The face folder is built first, to learn its methods; that prints progress.)
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert code == 2 and len(err) == 1 and "--holdouts C: not a method" in err[0]
    assert "A, B" in err[0]
    assert not (tmp_path / "r" / "runs").exists()  # nothing trained


def test_best_spectral_is_chosen_on_validation(faces, tmp_path, monkeypatch):
    s = _study(faces, tmp_path, ("lomo",))
    vals = {"dct_stats": 0.61, "frank_dct": 0.72, "durall_spectrum": 0.65}
    monkeypatch.setattr(s, "val_auc", lambda spec, seed: vals[spec.model_name])
    assert s.best_spectral() == "frank_dct"


def test_table4_trains_resumes_and_reports_sklearn_auc(faces, tmp_path, monkeypatch):
    monkeypatch.setattr(study_tables, "CUTOFFS", (0, 4))  # two runs are enough (CI time)
    s = _study(faces, tmp_path, ("table4",), seeds=(0,))
    s.run()
    data = json.loads((tmp_path / "res" / "table4.json").read_text())
    assert [r["cutoff"] for r in data["rows"]] == [0, 4]
    md = (tmp_path / "res" / "table4.md").read_text()
    assert "pending" not in md and "Command: `python -m aird_jax.experiments.study" in md
    for row in data["rows"]:
        (run,) = row["runs"]
        # Reference: sklearn on the scores the evaluation saved for that run.
        spec = s.learned("freq_only", cutoff=row["cutoff"])
        res_dir = s.finished(spec, 0) / "eval" / "test"
        (res_file,) = [p for p in res_dir.glob("*.json")]
        scores = np.load(json.loads(res_file.read_text())["files"]["scores"])
        ref = 100 * roc_auc_score(scores["labels"], scores["scores"])
        assert run["auc"] == pytest.approx(ref, abs=1e-9)
        assert run["n"] == 20 and run["n_fake"] == 10
    # A second run of the same command trains nothing and writes the same numbers.
    before = (tmp_path / "res" / "table4.json").read_text()
    logs: list[str] = []
    s2 = _study(faces, tmp_path, ("table4",), seeds=(0,))
    s2.log = logs.append
    s2.run()
    assert not [line for line in logs if "training" in line]
    assert (tmp_path / "res" / "table4.json").read_text() == before


def test_table3_json_holds_seeds_mean_std_interval_commit_and_data_digest(
    faces, tmp_path, monkeypatch
):
    """The issue's JSON shape, checked against numpy (mean, sample std), sklearn (per-seed AUC
    on the saved scores) and the seed-mean bootstrap (itself checked against a naive loop)."""
    from aird_jax.data.builders.base import source_digest
    from aird_jax.experiments.stats import bootstrap_video_auc_ci

    monkeypatch.setattr(study_tables, "LEARNED", ("freq_only",))  # one learned row: CI time
    monkeypatch.setattr(study_tables, "SPECTRAL", ("dct_stats",))
    s = _study(faces, tmp_path, ("table3",), seeds=(0, 1))
    s.run()
    data = json.loads((tmp_path / "res" / "table3.json").read_text())
    assert data["data_sha256"] == source_digest(faces) and len(data["data_sha256"]) == 64
    assert data["commit"] and all(isinstance(c, str) for c in data["commit"])
    row = data["rows"]["freq_only"]
    assert row["seeds"] == [0, 1] and row["config"]["model"]["fusion"] == "freq_only"
    labels, scores, vids = [], [], []
    for seed in (0, 1):
        with np.load(s.scores_file(s.learned("freq_only"), seed)) as z:
            labels, vids = z["labels"], z["video_ids"]
            scores.append(z["scores"])
    want = [100 * roc_auc_score(labels, sc) for sc in scores]
    assert row["auc"] == pytest.approx(want, abs=1e-9)
    assert row["mean"] == pytest.approx(np.mean(want)) and row["std"] == pytest.approx(
        np.std(want, ddof=1)
    )
    assert row["ci95"] == pytest.approx(bootstrap_video_auc_ci(labels, np.stack(scores), vids))
    md = (tmp_path / "res" / "table3.md").read_text()
    lo, hi = row["ci95"]
    assert f"{row['mean']:.1f} ± {row['std']:.1f} [{lo:.1f}, {hi:.1f}]" in md


def test_missing_faces_folder_is_one_line(tmp_path, capsys):
    code = study_mod.main(["--faces", str(tmp_path / "nope"), "--runs", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "must hold real/ and fake/<method>/" in err[0]


def test_runs_saved_before_new_config_keys_are_reused_and_resumed(tmp_path):
    """A run whose saved config predates data.crop/data.fakes/... (at their "as before" values)
    is the same run; a different value of such a key is not."""
    from aird_jax.config import ADDED_KEYS, check_run_config, load_config, same_config, to_dict

    cfg = load_config("configs/late_supcon.py:smoke")
    now = to_dict(cfg)
    old = json.loads(json.dumps(now))
    for key in ADDED_KEYS:
        section, name = key.split(".")
        del old[section][name]
    assert same_config(old, now)
    (tmp_path / "config.json").write_text(json.dumps({"config": old}))
    check_run_config(cfg, tmp_path)  # resumes: no error
    cfg.data.fakes = "sbi"
    assert not same_config(old, to_dict(cfg))
    with pytest.raises(ValueError, match="data.fakes"):
        check_run_config(cfg, tmp_path)
