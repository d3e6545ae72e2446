"""Celeb-DF v2 (Li et al., CVPR 2020)."""

from __future__ import annotations

from pathlib import Path

import tensorflow_datasets as tfds

from aird_jax.data.builders.base import AirdBuilder, leaf_dirs

FOLDERS = {"Celeb-real": 0, "YouTube-real": 0, "Celeb-synthesis": 1}

INSTRUCTIONS = """\
Celeb-DF v2 must be requested from its authors: https://github.com/yuezunli/celeb-deepfakeforensics
(form linked from the README). Unpack it so that
  <root>/manual/celeb_df_v2/Celeb-real/id0_0000.mp4 ...
  <root>/manual/celeb_df_v2/YouTube-real/00000.mp4 ...
  <root>/manual/celeb_df_v2/Celeb-synthesis/id0_id1_0000.mp4 ...
  <root>/manual/celeb_df_v2/List_of_testing_videos.txt   (ships with the dataset)
Then extract the faces (mirrors the video tree):
  python scripts/extract_faces.py --videos <root>/manual/celeb_df_v2 \\
      --dataset celeb_df_v2 --frames 0"""


def parse_test_list(text: str) -> dict[str, int]:
    """``List_of_testing_videos.txt`` -> {"Celeb-real/id0_0000": label}.

    In that file ``1`` means REAL and ``0`` means FAKE; we return the project's convention
    (0 = real, 1 = fake).
    """
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        flag, _, rel = line.partition(" ")
        if flag not in ("0", "1") or not rel.strip():
            raise ValueError(f"line {n}: expected '<0|1> <folder>/<video>.mp4', got {line!r}")
        key = str(Path(rel.strip()).with_suffix("").as_posix())
        out[key] = 0 if flag == "1" else 1
    return out


class CelebDFv2(AirdBuilder):
    """Celeb-DF v2: ``test`` = the official List_of_testing_videos.txt (518 videos: 178 real,
    340 fake; in that file 1 = real), ``train`` = every other extracted video. Labels of the
    test videos come from the list; of the others from their folder (Celeb-synthesis = fake).
    Used only as a cross-dataset test set in the paper's protocol.
    """

    name = "celeb_df_v2"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.1.0": "video_id without a doubled prefix (the folder is the method); corrupt frames "
        "skipped and listed in aird_build_report.json",
        "1.0.0": "first release",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
    HOMEPAGE = "https://github.com/yuezunli/celeb-deepfakeforensics"

    def _splits(self, dl_manager):
        lst = self.require_file("List_of_testing_videos.txt")
        try:
            test = parse_test_list(lst.read_text())
        except ValueError as e:
            raise self.missing(f"{lst} is not a Celeb-DF test list: {e}") from None
        index = {}
        for parts, path in leaf_dirs(self.require_faces()).items():
            if len(parts) >= 2 and parts[-2] in FOLDERS:
                index["/".join(parts[-2:])] = path
        if not index:
            raise self.missing(
                f"no face folders under {self.aird_faces_dir}/<{'|'.join(FOLDERS)}>/<video>/."
            )

        def videos(keys, label_of):
            out = []
            for k in sorted(keys):
                lab = label_of(k)
                out.append((index[k], lab, "real" if lab == 0 else "Celeb-synthesis", k))
            return out

        test_keys = [k for k in test if k in index]
        train_keys = [k for k in index if k not in test]
        return self.split_generators(
            {
                "train": videos(train_keys, lambda k: FOLDERS[k.split("/")[0]]),
                "test": videos(test_keys, lambda k: test[k]),
            }
        )
