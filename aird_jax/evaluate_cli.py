"""The evaluation CLI (``scripts/evaluate.py``, ``python -m aird_jax.evaluate_cli``): evaluate a
run's checkpoint on a dataset split (frame/video AUC, AP, EER, TPR@FPR, accuracy).

  python scripts/evaluate.py --workdir runs/X --dataset celeb_df_v2 --split test|all \
      [--checkpoint best|latest|STEP] [--config c23] [--methods Deepfakes,FaceSwap] \
      [--degradation jpeg50] [--frames all|N]

Accuracy uses the threshold chosen on the run's own validation set. ``--split all`` scores every
split of the dataset as one test set (cross-dataset evaluation); ``--methods`` keeps the reals and
only the listed fakes. The AUC of the reals against each method alone is always reported. Writes
<workdir>/eval/<dataset>_<split>[_only-<methods>][_<degradation>]_step<N>.json, a ROC PNG and
per-frame scores. A user error (missing run, dataset, bad argument) ends in one ``error:`` line.
"""

from __future__ import annotations

import argparse
import sys

from aird_jax import cli, host_memory
from aird_jax import evaluate as ev


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="run folder written by aird_jax.main")
    p.add_argument("--checkpoint", default="best", help="best | latest | a step number")
    p.add_argument(
        "--dataset",
        default=None,
        help="dataset name (default: the run's training dataset), e.g. ffpp, "
        "celeb_df_v2, dfdc_preview, deeper_forensics, face_folder, "
        "synthetic_upsampling",
    )
    p.add_argument("--config", default=None, help="builder config, e.g. c23 ('' = default)")
    p.add_argument("--root", default=None, help="data root (default: $AIRD_DATA_DIR or data/)")
    p.add_argument("--manual-dir", default=None, help="folder holding the manual download")
    p.add_argument(
        "--split", default="test", help="test, val, train, ... or 'all' (every split as one set)"
    )
    p.add_argument(
        "--methods",
        default=None,
        help="comma-separated fake methods to keep, e.g. Deepfakes,FaceSwap (reals are always "
        "kept; default: all)",
    )
    p.add_argument(
        "--degradation", default=None, help="none, blur2, blur3, jpeg70, jpeg50, jpeg20, blur_jpeg"
    )
    p.add_argument("--frames", default=None, help="frames per video: all | N (default: dataset)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--output-dir", default=None, help="default: <workdir>/eval")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = p.parse_args(argv)
    return cli.run(lambda: _main(args), argv)


def _main(args: argparse.Namespace) -> int:
    frames = ev.parse_frames(args.frames)
    ckpt = ev.parse_checkpoint(args.checkpoint)
    run = ev.load_run_or_explain(args.workdir, ckpt)
    overrides = {}
    if args.root is not None:
        overrides["root"] = args.root
    if args.manual_dir is not None:
        overrides["manual_dir"] = args.manual_dir
    if args.methods is not None:
        overrides["methods"] = args.methods
    data_cfg = ev.eval_data_config(run.config, args.dataset, args.config, **overrides)
    result = ev.evaluate_run(
        args.workdir,
        data_cfg,
        args.split,
        args.degradation,
        ckpt,
        run=run,
        frames_per_video=frames,
        batch_size=args.batch_size,
        output_dir=args.output_dir,
        progress=not args.no_progress,
    )
    print(ev.format_summary(result))
    return 0


if __name__ == "__main__":
    host_memory.relaunch_under_allocator()  # under tcmalloc where chosen (host_memory.py)
    sys.exit(main())
