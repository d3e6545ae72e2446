"""Train loop: determinism, resume, device-count invariance, early stopping, NaN, bad configs.

The real model (``build_model``) runs here, mostly as the frequency-stream-only detector, whose
compile time suits CPU CI; the loop, optimiser and collectives are the same for every fusion.
The data come from a small in-memory source built with grain that honours the data contract
(``num_examples`` / ``train_loader`` with grain iterator state / padded ``eval_loader``), so these
tests do not wait for a TFDS build; the real pipeline is exercised by the quickstart.
"""

from __future__ import annotations

import json
import math
import os
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from absl import flags
from ml_collections import config_flags
from sklearn.metrics import roc_auc_score

from aird_jax import main as aird_main
from aird_jax import train
from aird_jax.checkpoint import load_run
from aird_jax.config import load_config
from aird_jax.inference import Scorer, score_images
from aird_jax.parallel import Parallel, make_parallel

REPO = Path(__file__).resolve().parents[1]


class ToyData:
    """Contract-shaped in-memory data. Fakes carry a faint 1-pixel checkerboard (a high-frequency
    artefact the DCT stream can learn); videos are pairs of consecutive same-label images."""

    def __init__(
        self,
        size: int = 32,
        n_train: int = 64,
        n_val: int = 32,
        nan_from_step=None,
        sigterm_at_step=None,
        val_only_real: bool = False,
    ):
        self.size, self.nan_from_step, self.sigterm_at = size, nan_from_step, sigterm_at_step
        self.splits = {"train": self._make(n_train, size, 11), "val": self._make(n_val, size, 12)}
        if val_only_real:  # a validation split with one class (a data-selection mistake)
            x, y, v = self.splits["val"]
            self.splits["val"] = (x, np.zeros_like(y), v)

    @staticmethod
    def _make(n: int, s: int, seed: int):
        rng = np.random.default_rng(seed)
        y = ((np.arange(n) // 2) % 2).astype(np.int32)
        x = rng.uniform(0.2, 0.8, (n, s, s, 3)).astype(np.float32)
        checker = (np.indices((s, s)).sum(0) % 2).astype(np.float32)[..., None]
        x[y == 1] += 0.1 * checker
        vid = np.array([f"vid{i // 2:03d}" for i in range(n)])
        return x, y, vid

    def num_examples(self, cfg, split: str) -> int:
        return len(self.splits[split][1])

    def class_counts(self, cfg, split: str) -> dict[int, int]:
        """The optional contract function: {0: real examples, 1: fake examples} of a split."""
        y = self.splits[split][1]
        return {0: int(np.sum(y == 0)), 1: int(np.sum(y == 1))}

    def train_loader(self, cfg, *, seed, batch_size, shard_index=0, shard_count=1):
        x, y, _ = self.splits[cfg.train_split]
        nan_from = self.nan_from_step

        def load(i):
            return {"image": x[i], "label": y[i]}

        ds = (
            grain.MapDataset.range(len(y))[shard_index::shard_count]
            .seed(seed)
            .shuffle()
            .repeat(None)
            .map(load)
            .batch(batch_size, drop_remainder=True)
        )
        if nan_from is not None:
            ds = ds.map_with_index(
                lambda i, b: {**b, "image": b["image"] * np.nan} if i + 1 >= nan_from else b
            )
        if self.sigterm_at is not None:
            k = self.sigterm_at

            def term(i, b):
                if i + 1 == k:  # as if the scheduler sent SIGTERM while this batch was read
                    os.kill(os.getpid(), signal.SIGTERM)
                return b

            ds = ds.map_with_index(term)
        return ds

    def eval_loader(self, cfg, split, *, batch_size, **_):
        x, y, v = self.splits[split]
        for i in range(0, len(y), batch_size):
            k = min(batch_size, len(y) - i)
            pad = batch_size - k
            yield {
                "image": np.concatenate([x[i : i + k], np.zeros((pad,) + x.shape[1:], np.float32)]),
                "label": np.concatenate([y[i : i + k], np.zeros(pad, np.int32)]),
                "video_id": np.concatenate([v[i : i + k], np.array([""] * pad)]),
                "mask": np.arange(batch_size) < k,
            }


class NoCountsData:
    """ToyData without the optional ``class_counts`` (like a pipeline that lacks it)."""

    def __init__(self, toy: ToyData):
        self.num_examples = toy.num_examples
        self.train_loader, self.eval_loader = toy.train_loader, toy.eval_loader


def smoke_config(**overrides):
    cfg = load_config("configs/late_supcon.py:smoke")
    cfg.model.fusion = "freq_only"
    cfg.loss.lam = 0.5  # keep SupCon in the loop, even without the RGB stream
    for k, v in overrides.items():
        sec, key = k.split("__")
        cfg[sec][key] = v
    return cfg


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    wd = tmp_path_factory.mktemp("run_a")
    summary = train.train_and_evaluate(smoke_config(), wd, data=ToyData())
    return wd, summary


def _variables(workdir, which="latest"):
    return load_run(workdir, which).variables


def test_resume_after_crash_is_bitwise_identical(run_a, tmp_path, capsys):
    wd_a, _ = run_a
    wd = tmp_path / "b"
    # Dies after step 5 without saving (like SIGKILL): the latest checkpoint is step 4, mid-epoch 2.
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(smoke_config(), wd, data=ToyData(), _crash_after_step=5)
    assert load_run(wd, "latest").step == 4
    capsys.readouterr()
    train.train_and_evaluate(smoke_config(), wd, data=ToyData())
    out = capsys.readouterr().out
    assert "Resuming from" in out and "latest step 4" in out
    a, b = _variables(wd_a), _variables(wd)
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 0
    for u, v in zip(leaves_a, leaves_b):
        assert np.array_equal(np.asarray(u), np.asarray(v))
    # Same seed => identical metrics file (no timing fields in it by design).
    assert (wd / "metrics.jsonl").read_text() == (wd_a / "metrics.jsonl").read_text()


def test_sigterm_checkpoints_then_resumes_identically(run_a, tmp_path):
    wd_a, _ = run_a
    with pytest.raises(SystemExit) as exc:
        train.train_and_evaluate(smoke_config(), tmp_path, data=ToyData(sigterm_at_step=2))
    assert exc.value.code == 143
    stopped_at = load_run(tmp_path, "latest").step
    assert 1 <= stopped_at < 6
    train.train_and_evaluate(smoke_config(), tmp_path, data=ToyData())
    for u, v in zip(jax.tree.leaves(_variables(wd_a)), jax.tree.leaves(_variables(tmp_path))):
        assert np.array_equal(np.asarray(u), np.asarray(v))


def test_different_seed_differs_and_config_change_refused(run_a, tmp_path):
    wd_a, _ = run_a
    cfg = smoke_config()
    cfg.seed = 1
    train.train_and_evaluate(cfg, tmp_path, data=ToyData())
    a = [json.loads(x) for x in (wd_a / "metrics.jsonl").read_text().splitlines()]
    c = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(a) == len(c) == 2
    assert a[0]["train_loss"] != c[0]["train_loss"]
    # Restarting run A's workdir with another learning rate is refused, naming the key.
    with pytest.raises(ValueError, match=r"different configuration[\s\S]*optim\.lr"):
        train.train_and_evaluate(smoke_config(optim__lr=3e-4), wd_a, data=ToyData())


def test_outputs_and_load_run_agree_with_sklearn(run_a):
    wd, summary = run_a
    lines = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    saved = json.loads((wd / "config.json").read_text())
    assert saved["config"]["model"]["fusion"] == "freq_only" and "jax" in saved["versions"]
    assert list((wd / "tensorboard").glob("events.out.tfevents.*"))
    best = max(lines, key=lambda r: r["frame_auc"])
    run = load_run(wd, "best")
    assert run.step == best["step"] == summary["best"]["step"]
    assert run.val_metrics["frame_auc"] == best["frame_auc"]
    # Independent check of the recorded validation AUCs: rescore with score_images, sklearn AUC.
    x, y, vid = ToyData().splits["val"]
    s = score_images(Scorer(run.model, run.variables), x, batch_size=16)
    assert roc_auc_score(y, s) == pytest.approx(best["frame_auc"], abs=1e-6)
    v = sorted(set(vid))
    vs = [s[vid == k].mean() for k in v]
    vy = [y[vid == k][0] for k in v]
    assert roc_auc_score(vy, vs) == pytest.approx(best["video_auc"], abs=1e-6)


def test_early_stopping_on_plateau(tmp_path, monkeypatch):
    # Validation AUC frozen at 0.7: epoch 1 is the best, then `patience` epochs without a gain.
    def flat(res):
        return {"frame_auc": 0.7, "video_auc": 0.7, "threshold": 0.5}

    monkeypatch.setattr(train, "validation_metrics", flat)
    cfg = smoke_config(train__epochs=10, train__patience=2)
    summary = train.train_and_evaluate(cfg, tmp_path, data=ToyData())
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 and "early stopping" in summary["stopped"]
    assert summary["best"]["epoch"] == 1


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    with pytest.raises(train.TrainingDiverged, match="non-finite.*step 5.*last good checkpoint"):
        train.train_and_evaluate(smoke_config(), tmp_path, data=ToyData(nan_from_step=5))
    run = load_run(tmp_path, "latest")
    assert run.step == 4
    assert all(np.all(np.isfinite(np.asarray(p))) for p in jax.tree.leaves(run.variables))


def _saved_arrays(workdir) -> dict[int, list[np.ndarray]]:
    """Every array of every ``latest`` checkpoint on disk (model and optimiser state), read
    straight from the Orbax files without any template from the code under test."""
    out = {}
    latest = Path(workdir) / "checkpoints" / "latest"
    for d in sorted(latest.glob("[0-9]*")) if latest.exists() else []:
        ckptr = ocp.PyTreeCheckpointer()
        trees = [ckptr.restore(d / part) for part in ("model", "opt")]
        out[int(d.name)] = [np.asarray(a) for a in jax.tree.leaves(trees)]
    return out


def test_diverging_lr_never_checkpoints_nonfinite_state(tmp_path):
    # The reproduction: lr=1e39 overflows float32, so the first update writes Inf/NaN
    # into the parameters while that step's loss and gradient are still finite.
    cfg = smoke_config(optim__lr=1e39, train__checkpoint_every_steps=1)
    with pytest.raises(train.TrainingDiverged) as exc:
        train.train_and_evaluate(cfg, tmp_path, data=ToyData())
    saved = _saved_arrays(tmp_path)
    for step, arrays in saved.items():
        for a in arrays:
            if np.issubdtype(a.dtype, np.inexact):
                assert np.all(np.isfinite(a)), f"checkpoint {step} holds NaN/Inf"
    msg = str(exc.value)
    if saved:
        assert f"{tmp_path}/checkpoints/latest/{max(saved)}" in msg
    else:
        assert "No checkpoint had been written" in msg and "kept at" not in msg


def test_divergence_on_last_step_of_epoch_is_the_divergence_stop(tmp_path, monkeypatch):
    # The parameters turn Inf on step 3, the last of epoch 1, while its loss is still finite:
    # the stop must come before validation (no metrics.py crash) and before any checkpoint.
    real = train.make_train_step

    def corrupting(config, model, tx):
        step_fn = real(config, model, tx)

        def corrupt(state, batch, key):
            new, m = step_fn(state, batch, key)
            inf = jnp.where(new["step"] >= 3, jnp.inf, 0.0)
            return {**new, "params": jax.tree.map(lambda p: p + inf, new["params"])}, m

        return corrupt

    monkeypatch.setattr(train, "make_train_step", corrupting)
    with pytest.raises(train.TrainingDiverged, match="after step 3") as exc:
        train.train_and_evaluate(smoke_config(), tmp_path, data=ToyData())
    assert f"{tmp_path}/checkpoints/latest/2 " in str(exc.value)
    assert sorted(_saved_arrays(tmp_path)) == [2]
    assert all(np.all(np.isfinite(a)) for a in _saved_arrays(tmp_path)[2])
    assert not list((tmp_path / "checkpoints" / "best").glob("[0-9]*"))  # no best from it


def test_nan_loss_on_last_step_of_epoch_stops_cleanly(tmp_path):
    with pytest.raises(train.TrainingDiverged, match="non-finite training loss.*step 3"):
        train.train_and_evaluate(smoke_config(), tmp_path, data=ToyData(nan_from_step=3))
    assert sorted(_saved_arrays(tmp_path)) == [2]


def test_one_class_split_refused_at_start(tmp_path, monkeypatch):
    def no_init(*a, **k):
        raise AssertionError("the run started before the classes were checked")

    monkeypatch.setattr(train, "init_state", no_init)
    with pytest.raises(ValueError, match=r"validation split 'val' has 32 real and 0 fake"):
        train.train_and_evaluate(smoke_config(), tmp_path, data=ToyData(val_only_real=True))
    assert not (tmp_path / "config.json").exists()


def test_one_class_split_without_class_counts_gets_a_clear_message(tmp_path):
    data = NoCountsData(ToyData(val_only_real=True))
    with pytest.raises(ValueError, match=r"validation split 'val' has 32 real and 0 fake .*first"):
        train.train_and_evaluate(smoke_config(), tmp_path, data=data)


def test_failed_start_leaves_no_config_and_moved_data_resumes(tmp_path, capsys):
    # A batch larger than the 64 training examples: refused once the data are opened.
    with pytest.raises(ValueError, match="fewer than one batch"):
        bad = smoke_config(train__batch_size=128, train__steps_per_epoch=0)
        train.train_and_evaluate(bad, tmp_path, data=ToyData())
    assert not (tmp_path / "config.json").exists()
    # The corrected command runs in the same workdir (data.root given explicitly) ...
    first = smoke_config(data__root=str(tmp_path / "data_here"))
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(first, tmp_path, data=ToyData(), _crash_after_step=5)
    assert (tmp_path / "config.json").exists()
    # ... and resumes with the data moved (root by default, faces elsewhere).
    moved = smoke_config(data__faces_dir=str(tmp_path / "moved_faces"))
    capsys.readouterr()
    train.train_and_evaluate(moved, tmp_path, data=ToyData())
    assert "Resuming from" in capsys.readouterr().out


def _tb_scalars(workdir) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} read from the TF event files (TFRecord framing, Event protos)."""
    from tensorboardX.proto import event_pb2

    out: dict[str, dict[int, float]] = {}
    for f in sorted((Path(workdir) / "tensorboard").glob("events.out.tfevents.*")):
        buf, i = f.read_bytes(), 0
        while i < len(buf):
            (n,) = struct.unpack("<Q", buf[i : i + 8])
            ev = event_pb2.Event.FromString(buf[i + 12 : i + 12 + n])
            i += 12 + n + 4
            for v in ev.summary.value:
                out.setdefault(v.tag, {})[ev.step] = v.simple_value
    return out


def test_tensorboard_one_step_axis_and_both_learning_rates(run_a):
    wd, _ = run_a
    cfg = smoke_config()
    spe, n_steps = cfg.train.steps_per_epoch, cfg.train.steps_per_epoch * cfg.train.epochs
    tags = _tb_scalars(wd)
    for tag, by_step in tags.items():
        assert set(by_step) <= set(range(1, n_steps + 1)), tag
    epoch_tags = [t for t in tags if t.startswith("epoch/")]
    assert epoch_tags and all(set(tags[t]) == {spe, 2 * spe} for t in epoch_tags)
    # SGDR (torch CosineAnnealingWarmRestarts) by hand: step g uses the rate of update g - 1.
    o = cfg.optim
    period = o.restart_epochs * spe
    for group, base in (("head", o.lr), ("backbone", o.lr * o.backbone_lr_mult)):
        got = tags[f"train/lr_{group}"]
        assert set(got) == set(range(1, n_steps + 1))
        for g, v in got.items():
            t = (g - 1) % period
            ref = o.min_lr + (base - o.min_lr) * (1 + math.cos(math.pi * t / period)) / 2
            assert v == pytest.approx(ref, rel=1e-5), (group, g)


def test_progress_bar_starts_after_compilation(tmp_path, monkeypatch, capsys):
    import tqdm.auto

    calls, bars = [0], []
    real_compile = Parallel.compile_step

    def counting_compile(self, step_fn):
        compiled = real_compile(self, step_fn)

        def step(*a):
            calls[0] += 1
            return compiled(*a)

        return step

    class SpyBar(tqdm.auto.tqdm):
        def __init__(self, *a, **k):
            bars.append((calls[0], k.get("initial")))
            super().__init__(*a, **k)

    monkeypatch.setattr(Parallel, "compile_step", counting_compile)
    monkeypatch.setattr(tqdm.auto, "tqdm", SpyBar)
    cfg = smoke_config(train__progress=True)
    train.train_and_evaluate(cfg, tmp_path, data=ToyData())
    spe = cfg.train.steps_per_epoch
    # Epoch 1's bar opens after the compiling first step, at 1; epoch 2's bar at its start.
    assert bars == [(1, 1), (spe, 0)]
    err = capsys.readouterr().err
    assert "compiling the train step" in err


def test_scaled_down_note_describes_the_config_run(tmp_path, monkeypatch, capsys):
    class NoTraining:
        def __init__(self, *a, **k):
            pass

        def run(self):
            return {}

    monkeypatch.setattr(train, "Trainer", NoTraining)
    cfg = smoke_config()
    cfg.data.name, cfg.data.config = "ffpp", "c23"  # the paper's data, at smoke scale
    train.train_and_evaluate(cfg, tmp_path, data=ToyData())
    note = [x for x in capsys.readouterr().out.splitlines() if x.startswith("NOTE:")]
    assert len(note) == 1
    # The paper's values (Section III-G / IV-A, as test_variants_are_the_table_rows transcribes).
    assert "data.image_size 224 -> 32" in note[0] and "train.batch_size 32 -> 8" in note[0]
    assert "model.fusion 'late' -> 'freq_only'" in note[0]
    assert "synthetic" not in note[0] and "data.name" not in note[0]


def test_loss_decreases_on_learnable_batch(monkeypatch):
    # The step optimises the paper's eq. 7 as losses.total_loss computes it (a spy proves the
    # call; the loss it reports is that function's value).
    calls = []
    real_total_loss = train.losses.total_loss

    def spy(*args, **kwargs):
        calls.append(args[3:])
        return real_total_loss(*args, **kwargs)

    monkeypatch.setattr(train.losses, "total_loss", spy)
    cfg = smoke_config(optim__lr=1e-3)
    cfg.model.dropout = cfg.model.freq_dropout = 0.0
    par = make_parallel(cfg)
    model, hs, tx, _ = train.init_state(cfg, 100)
    step = par.compile_step(train.make_train_step(cfg, model, tx))
    st, key = par.put_state(hs), par.put_state(train.seed_key_data(0))
    x, y, _ = ToyData().splits["train"]
    batch = par.put_batch({"image": x[:8], "label": y[:8]})
    losses = []
    for _ in range(25):
        st, m = step(st, batch, key)
        losses.append(par.get_metrics(m)["loss"])
    assert losses[-1] < 0.5 * losses[0], losses
    assert calls == [(cfg.loss.lam, cfg.loss.temperature)]  # traced once, with the config's values


def test_bad_config_rejected_before_compile(monkeypatch, tmp_path):
    def no_compile(*a, **k):
        raise AssertionError("compiled before validating the config")

    monkeypatch.setattr(train, "init_state", no_compile)
    monkeypatch.setattr(Parallel, "compile_step", no_compile)
    for overrides, pattern in [
        ({"optim__lr": -1e-4}, "optim.lr"),
        ({"model__fusion": "middle"}, "fusion"),
        ({"loss__temperature": 0.0}, "temperature"),
        ({"train__batch_size": 0}, "batch_size"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            train.train_and_evaluate(smoke_config(**overrides), tmp_path, data=ToyData())
    cfg = smoke_config()
    cfg.parallel = "vmap"
    with pytest.raises(ValueError, match="shard_map"):
        train.train_and_evaluate(cfg, tmp_path, data=ToyData())


def test_typo_override_rejected_naming_valid_keys(monkeypatch):
    spec = f"--config={REPO / 'configs' / 'late_supcon.py'}:smoke"

    def parse(argv):
        monkeypatch.setattr(sys, "argv", argv)  # config_flags reads overrides from sys.argv
        fv = flags.FlagValues()
        config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True)
        fv(argv)
        return fv

    assert parse(["prog", spec, "--config.optim.lr=3e-4"]).config.optim.lr == 3e-4
    argv = ["prog", spec, "--config.optim.lrr=3e-4"]
    with pytest.raises((AttributeError, KeyError)) as err:
        parse(argv)
    msg = aird_main.explain_override_error(argv, err.value)
    assert "optim has no key 'lrr'" in msg and "weight_decay" in msg and "restart_epochs" in msg


def test_variants_are_the_table_rows():
    rows = {
        "late_supcon": ("late", 0.5),
        "late_fusion": ("late", 0.0),
        "early_fusion": ("early", 0.0),
        "rgb_only": ("rgb_only", 0.0),
        "freq_only": ("freq_only", 0.0),
    }
    for name, (fusion, lam) in rows.items():
        c = load_config(f"configs/late_supcon.py:{name}")
        assert (c.model.fusion, c.loss.lam) == (fusion, lam)
    paper = load_config("configs/late_supcon.py")
    # Section III-G, transcribed.
    o, t = paper.optim, paper.train
    assert (o.lr, o.backbone_lr_mult, o.b1, o.b2, o.weight_decay) == (1e-4, 0.1, 0.9, 0.999, 1e-5)
    assert (o.restart_epochs, o.min_lr, o.clip_norm) == (10, 1e-6, 1.0)
    assert (t.batch_size, t.epochs, t.patience) == (32, 40, 10)
    assert (paper.model.dropout, paper.loss.temperature, paper.loss.lam) == (0.3, 0.07, 0.5)
    assert (paper.data.name, paper.data.config, paper.data.image_size) == ("ffpp", "c23", 224)
    assert paper.data.frames_per_video == 10 and paper.seed == 0
    quick = load_config("configs/late_supcon.py:quickstart,freq_only")
    assert (quick.model.fusion, quick.data.name) == ("freq_only", "synthetic_upsampling")
    assert quick.scaled_down and not paper.scaled_down
    with pytest.raises(ValueError, match="valid variants"):
        load_config("configs/late_supcon.py:latesupcon")


MULTI_DEVICE = textwrap.dedent(
    """
    import json
    import numpy as np
    from test_train import ToyData, smoke_config
    from aird_jax import train
    from aird_jax.parallel import make_parallel
    x, y, _ = ToyData().splits["train"]
    out = {}
    for mode, n in (("shard_map", 1), ("shard_map", 2), ("pmap", 2)):
            cfg = smoke_config()
            cfg.model.dropout = cfg.model.freq_dropout = 0.0  # masks depend on the device index
            cfg.parallel, cfg.num_devices = mode, n
            # The full detector with the depthwise conv CPU runs pick (it has a custom VJP,
            # whose cotangent types shard_map checks).
            cfg.model.fusion, cfg.model.depthwise = "late", "shifted"
            par = make_parallel(cfg)
            model, hs, tx, _ = train.init_state(cfg, 3)
            step = par.compile_step(train.make_train_step(cfg, model, tx))
            st, key = par.put_state(hs), par.put_state(train.seed_key_data(0))
            traj = []
            for i in range(3):
                b = par.put_batch({"image": x[8 * i: 8 * i + 8], "label": y[8 * i: 8 * i + 8]})
                st, m = step(st, b, key)
                fm = par.get_metrics(m)
                # grad_norm catches a gradient scaled by the device count (which Adam and
                # clipping would largely hide in the loss).
                traj.append([fm["loss"], fm["grad_norm"]])
            out[f"{mode}{n}"] = traj
    cfg = smoke_config()
    cfg.train.batch_size = 7
    try:
        make_parallel(cfg)
        out["indivisible"] = "no error"
    except ValueError as e:
        out["indivisible"] = str(e)
    print("RESULT" + json.dumps(out))
    """
)


def test_one_vs_two_devices_and_shard_map_vs_pmap(tmp_path):
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
        # (init is the same program for every mode: the session's compilation cache, inherited
        # from tests/conftest.py, compiles it once)
    )
    # test_train (ToyData, smoke_config) is importable in the child through PYTHONPATH.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "tests"), env.get("PYTHONPATH")]))
    script = MULTI_DEVICE
    r = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.split("RESULT", 1)[1])
    ref = np.asarray(out["shard_map1"])
    assert ref.shape == (3, 2) and np.all(np.isfinite(ref))
    for k in ("shard_map2", "pmap2"):
        got = np.asarray(out[k])
        np.testing.assert_allclose(got[:, 0], ref[:, 0], atol=1e-5, rtol=0, err_msg=f"{k} loss")
        # Gradient norms are large (tens): compare relatively (an n_devices x scale is 100%).
        np.testing.assert_allclose(got[:, 1], ref[:, 1], rtol=1e-4, err_msg=f"{k} grad_norm")
    assert "not divisible by the 2 devices" in out["indivisible"]
