"""The paper's analysis figures from trained runs: Figure 2 (DCT filtering), Figure 3 (t-SNE of
the projection-head embeddings with silhouette scores, side by side with a run without the
contrastive term), Grad-CAM on the RGB stream and the DCT-coefficient saliency per method.

  python -m aird_jax.analyze --workdir runs/late_supcon --compare-workdir runs/late_fusion \\
      --out results/analysis [--max-faces 256] [--split test] [--checkpoint best]

Each figure is ``<out>/<name>.png`` next to ``<out>/<name>.json`` (the numbers behind it). The
test faces come through the evaluation data path; by default the dataset's ``test`` split, or
every ``test*`` split (the embedded data's in-domain and held-out tests).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from aird_jax import cli, host_memory
from aird_jax.analysis import dct_figure, gradcam, saliency, tsne
from aird_jax.analysis.faces import Faces, load_faces, model_outputs, say
from aird_jax.evaluate import load_run_or_explain, parse_checkpoint


def _name(run) -> str:
    lam = run.config.get("loss", {}).get("lam", None)
    return f"{run.workdir.name} (fusion {run.config.model.fusion}, SupCon lambda={lam})"


def figure_dct(run, faces: Faces, out: Path) -> Path:
    i = int(np.flatnonzero(faces.methods == "real")[0]) if (faces.labels == 0).any() else 0
    nums = dct_figure.dct_numbers(faces.images[i], int(run.config.model.dct_cutoff))
    nums.update(face_index=i, method=faces.methods[i], video_id=faces.video_ids[i])
    title = f"Figure 2: DCT filtering ({faces.methods[i]} face {faces.video_ids[i]})"
    return dct_figure.plot(nums, out / "fig2_dct_filtering", title)[0]


def figure_tsne(runs: list, faces: list[Faces], outs: list[dict], out: Path, seed: int) -> Path:
    panels = []
    for k, (run, f, o) in enumerate(zip(runs, faces, outs)):
        say(f"t-SNE {k + 1}/{len(runs)}: {len(f.labels)} embeddings of {run.workdir.name} ...")
        t0 = time.perf_counter()
        xy = tsne.embed_2d(o["embedding"], seed)
        sep = tsne.separation(o["embedding"], f.methods)
        say(f"t-SNE {k + 1}/{len(runs)} done in {time.perf_counter() - t0:.1f} s: {sep}")
        panels.append(
            {
                "title": _name(run),
                "workdir": str(run.workdir),
                "checkpoint_step": int(run.step),
                "xy": xy,
                "methods": f.methods,
                "separation": sep,
                "tsne_seed": seed,
            }
        )
    return tsne.plot(panels, out / "fig3_tsne")[0]


def figure_gradcam(run, faces: Faces, o: dict, out: Path, n: int) -> Path | None:
    if "gradcam" not in o:
        say("Grad-CAM skipped: a freq_only run has no RGB stream")
        return None
    idx = gradcam.pick_faces(faces.methods, n)
    cams, p = o["gradcam"][idx], o["p_fake"][idx]
    caps = [
        f"{faces.methods[i]}  P(fake)={q:.2f}\nGrad-CAM max {c.max():.3g}"
        for i, q, c in zip(idx, p, cams)
    ]
    numbers = {
        "workdir": str(run.workdir),
        "score": "fake logit = logits[1] - logits[0]",
        "feature_map_shape": list(cams.shape[1:]),
        "faces": [
            {
                "index": int(i),
                "method": faces.methods[i],
                "video_id": faces.video_ids[i],
                "p_fake": float(q),
                "cam": c,
            }  # fmt: skip
            for i, q, c in zip(idx, p, cams)
        ],
    }
    return gradcam.plot(faces.images[idx], cams, caps, out / "gradcam", numbers)[0]


def figure_saliency(run, faces: Faces, o: dict, out: Path) -> Path:
    cutoff = int(run.config.model.dct_cutoff)
    groups = saliency.by_method(o["dct_saliency"], faces.methods, cutoff)
    numbers = {"workdir": str(run.workdir), "cutoff": cutoff, "score": "logits[1] - logits[0]",
               "methods": groups}  # fmt: skip
    return saliency.plot(groups, cutoff, out / "dct_saliency", numbers)[0]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="run folder written by aird_jax.main")
    p.add_argument(
        "--compare-workdir", default=None, help="a second run for Fig. 3 (e.g. without SupCon)"
    )
    p.add_argument("--out", required=True, help="folder for the PNG + JSON pairs")
    p.add_argument("--checkpoint", default="best", help="best | latest | a step number")
    p.add_argument("--split", default=None, help="test split(s), comma-separated (default: test*)")
    p.add_argument("--max-faces", type=int, default=256, help="test faces per run (bounds cost)")
    p.add_argument("--gradcam-faces", type=int, default=8, help="faces shown in the Grad-CAM")
    p.add_argument("--batch-size", type=int, default=None, help="default: train.eval_batch_size")
    p.add_argument("--verbose", action="store_true", help="tracebacks for user errors")
    args = p.parse_args(argv)
    for key in ("max_faces", "gradcam_faces"):
        if getattr(args, key) < 1:
            raise cli.UserError(f"--{key.replace('_', '-')} must be a positive integer")
    if args.batch_size is not None and args.batch_size < 1:
        raise cli.UserError("--batch-size must be a positive integer")
    return args


def analyze(args: argparse.Namespace) -> list[Path]:
    """Load the run(s) and faces, write the four figures; returns the PNG paths."""
    ckpt = parse_checkpoint(args.checkpoint)
    for flag, wd in (("--workdir", args.workdir), ("--compare-workdir", args.compare_workdir)):
        if wd and not Path(wd).is_dir():
            raise cli.UserError(
                f"{flag} {wd} does not exist; give a run folder written by "
                f"'python -m aird_jax.main --config ... --workdir {wd}'"
            )
    runs = [load_run_or_explain(args.workdir, ckpt)]
    if args.compare_workdir:
        runs.append(load_run_or_explain(args.compare_workdir, ckpt))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bs = [int(args.batch_size or r.config.train.eval_batch_size) for r in runs]
    faces, outs = [], []
    for run, b in zip(runs, bs):
        say(f"loading up to {args.max_faces} test faces of {run.workdir} (step {run.step})")
        f = load_faces(run, args.split, args.max_faces, b)
        counts = {str(m): int(c) for m, c in zip(*np.unique(f.methods, return_counts=True))}
        say(f"{len(f.labels)} faces from {f.splits}: {counts}")
        faces.append(f)
        # Gradients (saliency, Grad-CAM) only for the first run; the second gives embeddings.
        say(f"forward{' and gradients' if not outs else ''} of {len(f.labels)} faces ...")
        outs.append(model_outputs(run, f.images, b, gradients=not outs))
    run, f = runs[0], faces[0]
    pngs = [figure_dct(run, f, out)]
    pngs.append(figure_tsne(runs, faces, outs, out, int(run.config.seed)))
    pngs.append(figure_gradcam(run, f, outs[0], out, args.gradcam_faces))
    pngs.append(figure_saliency(run, f, outs[0], out))
    return [p for p in pngs if p is not None]


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        t0 = time.perf_counter()
        for png in analyze(parse_args(argv)):
            print(f"wrote {png} (+ .json)")
        say(f"done in {time.perf_counter() - t0:.1f} s")
        return 0

    return cli.run(body, argv)


if __name__ == "__main__":
    host_memory.relaunch_under_allocator()  # under tcmalloc where chosen (host_memory.py)
    sys.exit(main())
