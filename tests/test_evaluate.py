"""Checkpoint evaluation: metrics against independent references, files written, --methods and
--split all, one-line errors, real face crops.

metrics.py computes ROC/AUC/AP with scikit-learn, so the references here are naive loops
(pairwise AUC, threshold sweeps; tests/test_metrics.py), not sklearn."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from _eval_shared import SHARED_DATA, tiny_run_dir
from test_metrics import _naive_ap, _naive_auc, _naive_roc, _naive_tpr_at_fpr

from aird_jax import evaluate as ev
from aird_jax import evaluate_cli


def roc_auc_score(y, s) -> float:
    return _naive_auc(np.asarray(y), np.asarray(s))


def roc_curve(y, s):
    return _naive_roc(np.asarray(y), np.asarray(s))


def _sk_eer(y, s) -> float:
    fpr, tpr, _ = roc_curve(y, s)
    fnr = 1 - tpr
    k = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[k] + fnr[k]) / 2)


def _by_video(vids, y, s):
    """Independent video aggregation: a dict loop instead of np.unique/bincount."""
    acc: dict[str, list] = {}
    for v, yy, ss in zip(vids, y, s):
        acc.setdefault(str(v), [int(yy), []])[1].append(float(ss))
    yv = np.array([a[0] for a in acc.values()])
    sv = np.array([np.mean(a[1]) for a in acc.values()])
    return yv, sv


def test_compute_metrics_matches_sklearn():
    rng = np.random.default_rng(0)
    vids = np.repeat([f"v{i}" for i in range(40)], 5)
    yv = rng.integers(0, 2, 40)
    y = np.repeat(yv, 5)
    s = np.clip(0.3 * y + rng.random(y.size) * 0.8, 0, 1).astype(np.float32)
    thr = 0.55
    m = ev.compute_metrics(s, y, vids, thr)
    assert m["frame"]["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert m["frame"]["acc"] == pytest.approx(np.mean((s >= thr) == y))
    assert m["frame"]["eer"] == pytest.approx(_sk_eer(y, s), abs=0.02)
    y2, s2 = _by_video(vids, y, s)
    assert m["video"]["n"] == 40
    assert m["video"]["auc"] == pytest.approx(roc_auc_score(y2, s2), abs=1e-9)
    assert m["video"]["acc"] == pytest.approx(np.mean((s2 >= thr) == y2))
    for level, (yy, ss) in {"frame": (y, s), "video": (y2, s2)}.items():
        assert m[level]["ap"] == pytest.approx(_naive_ap(yy, ss), abs=1e-9)
        assert m[level]["tpr@fpr1%"] == pytest.approx(_naive_tpr_at_fpr(yy, ss, 0.01))
        assert m[level]["tpr@fpr0.1%"] == pytest.approx(_naive_tpr_at_fpr(yy, ss, 0.001))
    # Per-method AUC: reals against each method's fakes alone (methods given per frame).
    vmethod = {f"v{i}": ("real" if yv[i] == 0 else ("A" if i % 2 else "B")) for i in range(40)}
    meth = np.array([vmethod[v] for v in vids])
    pm = ev.compute_metrics(s, y, vids, thr, meth)
    for name in ("A", "B"):
        keep = (meth == "real") | (meth == name)
        assert pm["frame"]["per_method_auc"][name] == pytest.approx(
            _naive_auc(y[keep], s[keep]), abs=1e-9
        )
        yk, sk = _by_video(vids[keep], y[keep], s[keep])
        assert pm["video"]["per_method_auc"][name] == pytest.approx(_naive_auc(yk, sk), abs=1e-9)
    # One class only (e.g. a real-only subset): NaN AUC with the reason, not a crash.
    one = ev.compute_metrics(s[y == 1], y[y == 1], vids[y == 1], thr)
    assert np.isnan(one["frame"]["auc"]) and "one class" in one["frame"]["error"]


def test_evaluate_run_synthetic_writes_results(tmp_path, capsys):
    workdir = tiny_run_dir()
    run = ev.load_run_or_explain(workdir, "best")
    res = ev.evaluate_run(
        workdir,
        None,
        "test_heldout",
        degradation="jpeg50",
        run=run,
        output_dir=tmp_path,
        progress=False,
        batch_size=16,
    )
    # Accuracy at the run's own validation threshold, not one tuned on the test data.
    assert res["threshold"] == pytest.approx(run.val_metrics["threshold"])
    assert res["checkpoint_step"] == run.step and res["degradation"] == "jpeg50"
    files = res["files"]
    on_disk = json.loads(open(files["json"]).read())
    assert on_disk["metrics"]["frame"]["auc"] == pytest.approx(res["metrics"]["frame"]["auc"])
    assert on_disk["versions"]["jax"] and on_disk["n_frames"] == res["n_frames"] > 0
    assert open(files["roc"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    sc = np.load(files["scores"])
    y, s, vids = sc["labels"], sc["scores"], sc["video_ids"]
    assert res["metrics"]["frame"]["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert res["metrics"]["frame"]["acc"] == pytest.approx(np.mean((s >= res["threshold"]) == y))
    yv, sv = _by_video(vids, y, s)
    assert res["metrics"]["video"]["auc"] == pytest.approx(roc_auc_score(yv, sv), abs=1e-9)

    # The CLI on the same run: one-screen summary, and the same numbers (deterministic).
    rc = evaluate_cli.main(
        [
            "--workdir",
            str(workdir),
            "--split",
            "test_heldout",
            "--degradation",
            "jpeg50",
            "--output-dir",
            str(tmp_path / "cli"),
            "--no-progress",
            "--batch-size",
            "16",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "threshold" in out and "video" in out
    again = json.loads(next((tmp_path / "cli").glob("*.json")).read_text())
    assert again["metrics"] == on_disk["metrics"]


def test_missing_run_and_dataset_messages(tmp_path, capsys):
    with pytest.raises(ev.EvaluationError, match="python -m aird_jax.main"):
        ev.evaluate_run(tmp_path / "nope", split="test")
    rc = evaluate_cli.main(["--workdir", str(tmp_path), "--split", "test"])
    assert rc == 2 and "aird_jax.main" in capsys.readouterr().err
    workdir = tiny_run_dir()
    run = ev.load_run_or_explain(workdir)
    missing = ev.eval_data_config(run.config, "celeb_df_v2", "", root=str(tmp_path / "root"))
    with pytest.raises(ev.EvaluationError, match="celeb_df_v2"):
        ev.evaluate_run(workdir, missing, "test", run=run, progress=False, write=False)
    with pytest.raises(ev.EvaluationError, match="checkpoint"):
        ev.parse_checkpoint("bestest")


def _face_subset(dst, per_class: int = 6):
    """A few real and fake crops of ffpp_faces299 as symlinks (never copied into the repo)."""
    src = SHARED_DATA / "ffpp_faces299"
    if not src.is_dir():
        pytest.skip(f"{src} absent: the real-data evaluation test needs ../shared/data")
    (dst / "real").mkdir(parents=True)
    for f in sorted((src / "real").glob("test_*.jpg"))[:per_class]:
        (dst / "real" / f.name).symlink_to(f)
    for method in ("Deepfakes", "FaceSwap"):
        (dst / "fake" / method).mkdir(parents=True)
        for f in sorted((src / "fake" / method).glob("test_*.jpg"))[: per_class // 2]:
            (dst / "fake" / method / f.name).symlink_to(f)
    return dst


def test_evaluate_face_folder_real_crops(tmp_path):
    folder = _face_subset(tmp_path / "faces")
    workdir = tiny_run_dir()
    run = ev.load_run_or_explain(workdir)
    data_cfg = ev.eval_data_config(
        run.config, "face_folder", "", manual_dir=str(folder), root=str(tmp_path / "root")
    )
    from aird_jax.data import pipeline

    split = "test" if "test" in _splits(pipeline, data_cfg) else "train"
    res = ev.evaluate_run(
        workdir, data_cfg, split, run=run, output_dir=tmp_path / "out", progress=False, batch_size=8
    )
    sc = np.load(res["files"]["scores"])
    assert res["n_frames"] == sc["scores"].size > 0
    assert set(np.unique(sc["labels"])) <= {0, 1}
    if len(np.unique(sc["labels"])) == 2:
        assert res["metrics"]["frame"]["auc"] == pytest.approx(
            roc_auc_score(sc["labels"], sc["scores"]), abs=1e-9
        )
    shutil.rmtree(tmp_path / "root", ignore_errors=True)


def _splits(pipeline, data_cfg) -> list[str]:
    found = []
    for s in ("test", "train"):
        try:
            pipeline.num_examples(data_cfg, s)
            found.append(s)
        except Exception:  # noqa: BLE001 - probing which splits the folder builder offers
            pass
    return found


def _method_folder(root, counts: dict[str, dict[str, int]], size: int):
    """A face_folder tree <root>/<split>/{real,fake/<method>}/ of random images."""
    rng = np.random.default_rng(1)
    for split, per in counts.items():
        for group, n in per.items():
            d = root / split / ("real" if group == "real" else f"fake/{group}")
            d.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                cv2.imwrite(str(d / f"{split}_{group}_{i}.png"), img)
    return root


def test_methods_filter_per_method_auc_and_all_splits(tmp_path, capsys):
    """--methods keeps reals + the listed fakes; per-method AUC is the reals against each method
    alone; --split all scores the union of the splits as one set."""
    workdir = tiny_run_dir()
    run = ev.load_run_or_explain(workdir)
    counts = {
        "train": {"real": 3, "m1": 2, "m2": 1, "m3": 1},
        "val": {"real": 2, "m1": 1, "m2": 1, "m3": 1},
        "test": {"real": 6, "m1": 3, "m2": 4, "m3": 2},
    }
    folder = _method_folder(tmp_path / "faces", counts, int(run.config.data.image_size))
    root = str(tmp_path / "root")

    def cfg(**kw):
        return ev.eval_data_config(run.config, "face_folder", "", manual_dir=str(folder), **kw)

    def check(res, expected_groups):
        with np.load(res["files"]["scores"]) as z:
            y, sc, vids, meth = z["labels"], z["scores"], z["video_ids"], z["methods"]
        # Each frame's method, independently: the folder its video id names (method/stem).
        assert [v.split("/")[0] for v in vids] == meth.tolist()
        assert sorted(set(meth.tolist())) == sorted(expected_groups)
        for name in sorted(set(expected_groups) - {"real"}):
            keep = (meth == "real") | (meth == name)
            for level in ("frame", "video"):  # one frame per video here
                assert res["metrics"][level]["per_method_auc"][name] == pytest.approx(
                    _naive_auc(y[keep], sc[keep]), abs=1e-9
                )
        assert res["metrics"]["frame"]["auc"] == pytest.approx(_naive_auc(y, sc), abs=1e-9)
        return y

    out = tmp_path / "out"
    res = ev.evaluate_run(
        workdir, cfg(root=root, methods="m1,m2"), "test", run=run, output_dir=out, progress=False
    )
    y = check(res, ["real", "m1", "m2"])
    assert res["methods"] == "m1,m2" and y.size == 6 + 3 + 4
    assert list(res["metrics"]["frame"]["per_method_auc"]) == ["m1", "m2"]

    res_all = ev.evaluate_run(
        workdir, cfg(root=root), "all", run=run, output_dir=out, progress=False
    )
    y = check(res_all, ["real", "m1", "m2", "m3"])
    assert sorted(res_all["splits"]) == ["test", "train", "val"]
    assert y.size == res_all["n_frames"] == sum(sum(c.values()) for c in counts.values())
    assert res_all["files"]["json"] != res["files"]["json"]

    # The CLI: --methods and --split all together, the new columns in the printed table.
    rc = evaluate_cli.main(
        [
            "--workdir",
            str(workdir),
            "--dataset",
            "face_folder",
            "--manual-dir",
            str(folder),
            "--root",
            root,
            "--split",
            "all",
            "--methods",
            "m3",
            "--output-dir",
            str(tmp_path / "cli"),
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0
    assert "AP" in printed and "TPR@1%" in printed and "m3" in printed
    (js,) = (tmp_path / "cli").glob("*.json")
    on_disk = json.loads(js.read_text())
    assert on_disk["methods"] == "m3" and on_disk["split"] == "all"
    assert on_disk["n_frames"] == sum(c["real"] + c["m3"] for c in counts.values())

    # A method the dataset does not have: one line naming the ones it has.
    rc = evaluate_cli.main(
        [
            "--workdir",
            str(workdir),
            "--dataset",
            "face_folder",
            "--manual-dir",
            str(folder),
            "--root",
            root,
            "--methods",
            "Deepfakes",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "m1" in err and "Traceback" not in err


def test_evaluate_cli_errors_are_one_line(tmp_path, capsys, monkeypatch):
    """Missing run, bad --checkpoint, missing dataset, bad --batch-size: one 'error:' line."""
    monkeypatch.delenv("AIRD_VERBOSE", raising=False)
    main = evaluate_cli.main
    workdir = str(tiny_run_dir())
    split = ["--split", "test_heldout"]  # a split the tiny run's dataset has
    cases = {
        "missing run": ["--workdir", str(tmp_path / "nope"), *split],
        "bad checkpoint": ["--workdir", workdir, "--checkpoint", "bestest", *split],
        "absent checkpoint": ["--workdir", workdir, "--checkpoint", "987654", *split],
        "missing dataset": ["--workdir", workdir, "--dataset", "celeb_df_v2"]
        + ["--root", str(tmp_path / "root")],
        "bad split": ["--workdir", workdir, "--split", "nosuchsplit"],
        "bad batch size": ["--workdir", workdir, "--batch-size", "0", *split],
    }
    for name, argv in cases.items():
        rc = main([*argv, "--no-progress", "--output-dir", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert rc == 2, name
        assert err.startswith("error: "), (name, err)
        assert "Traceback" not in err and err.count("error:") == 1, (name, err)


def test_two_face_folders_never_share_result_files(tmp_path):
    """Evaluating face folder A, then B, must not overwrite A's JSON/ROC/scores."""
    import cv2

    run = ev.load_run_or_explain(tiny_run_dir())
    stems = []
    for name, n in (("a", 2), ("b", 3)):
        for group in ("real", "fake/m"):
            d = tmp_path / name / group
            d.mkdir(parents=True)
            for i in range(n):
                cv2.imwrite(str(d / f"{i}.png"), np.full((8, 8, 3), i, np.uint8))
        cfg = ev.eval_data_config(run.config, "face_folder", manual_dir=str(tmp_path / name))
        stems.append(ev.result_stem(cfg, "test", None, None, run.step))
    assert stems[0] != stems[1]
    again = ev.eval_data_config(run.config, "face_folder", manual_dir=str(tmp_path / "a"))
    assert ev.result_stem(again, "test", None, None, run.step) == stems[0]
