"""Shared machinery of the project's TFDS builders.

Every builder writes the same features, so the pipeline never branches on the dataset:

=============  ==========================================================================
image          encoded image bytes (PNG for extracted faces, i.e. lossless; the original
               bytes for face folders and the synthetic set). Read back with
               ``SkipDecoding`` and decoded by OpenCV in the pipeline.
label          0 = real, 1 = fake (ClassLabel names ``real`` / ``fake``)
method         manipulation method / generator name; ``real`` for pristine material
video_id       ``<method>/<video>`` (unique across methods, e.g. ``Deepfakes/000_003``); a video
               key that already starts with ``<method>/`` is not prefixed again
               (:func:`video_key`)
frame_index    frame number within its video (0 for still images)
=============  ==========================================================================

Builds use ``file_format="array_record"`` (random access for grain, no TensorFlow).

Image files are decode-checked at build time with the pipeline's own decoder
(:func:`aird_jax.data.preprocess.decode_image`): an undecodable file is skipped, listed with its
path in ``aird_build_report.json`` next to the build and printed once; a split left with no
image at all is an error naming the split.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from aird_jax.data.preprocess import decode_image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_FRAME_RE = re.compile(r"(\d+)$")
REPORT = "aird_build_report.json"  # written next to every build: counts and skipped files
# scripts/extract_faces.py's record of a faces folder (data/extract.py MANIFEST): one line per
# finished video, so its digest changes whenever faces are extracted or re-extracted.
FACES_MANIFEST = "manifest.jsonl"


class DatasetMissingError(FileNotFoundError):
    """A manual download (or its extracted faces) is missing; the message says what to do."""


class StaleBuildError(ValueError):
    """A build's faces were extracted again (or more) after it was built; the message says
    which folder to remove."""


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def default_root() -> Path:
    """``$AIRD_DATA_DIR`` if set, else ``<repo>/data`` (contents git-ignored)."""
    env = os.environ.get("AIRD_DATA_DIR", "")
    return Path(env).expanduser() if env else repo_root() / "data"


def features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict(
        {
            # encoding_format=None: bytes are stored exactly as given (no re-encoding).
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format=None),
            "label": tfds.features.ClassLabel(names=["real", "fake"]),
            "method": tfds.features.Text(),
            "video_id": tfds.features.Text(),
            "frame_index": np.int32,
        }
    )


@contextlib.contextmanager
def quiet_tfds():
    """Silence TFDS's absl warnings meant for its own catalogue (e.g. "Variant folder ... has no
    dataset_info.json" before a first build, "Using custom data configuration")."""
    logger = logging.getLogger("absl")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


def video_key(method: str, video: str) -> str:
    """``<method>/<video>``, unless ``video`` already starts with ``<method>/`` (a path key such
    as ``method_A/1/1_A/b`` of DFDC or ``Celeb-synthesis/id0_id1_0000``): no doubled prefix."""
    return video if video.startswith(f"{method}/") else f"{method}/{video}"


def source_fingerprint(folder: str | os.PathLike) -> str:
    """:func:`source_digest` shortened to 16 hex digits (a build's config name)."""
    return source_digest(folder)[:16]


def source_digest(folder: str | os.PathLike) -> str:
    """A content digest of the image files under ``folder``: relative path, size and a BLAKE2b
    digest of the bytes of each (sha256 over those, hex). Any added, removed, renamed or
    changed image changes it; ``"none"`` when the folder does not exist.

    Content, not modification times: a copy of the folder, or the same files mounted again
    (fresh mtimes), is the same source, so its build and every cached evaluation on it are
    reused instead of redone. Reading the bytes costs ~0.2 s per 100 MB."""
    top = Path(folder)
    if not top.is_dir():
        return "none"
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        dirnames.sort()
        for f in sorted(filenames):
            if not f.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = Path(dirpath) / f
            rel = path.relative_to(top).as_posix()
            try:
                with open(path, "rb") as fh:
                    digest = hashlib.file_digest(fh, "blake2b").hexdigest()
                size = path.stat().st_size
            except OSError:  # a dangling link or an unreadable file: part of the content as such
                h.update(f"{rel}\0unreadable\n".encode())
                continue
            h.update(f"{rel}\0{size}\0{digest}\n".encode())
    return h.hexdigest()


def frame_index_from_name(path: Path) -> int:
    m = _FRAME_RE.search(path.stem)
    return int(m.group(1)) if m else 0


def list_images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def leaf_dirs(faces_dir: Path) -> dict[tuple[str, ...], Path]:
    """Every folder under ``faces_dir`` that directly holds face images, keyed by its relative
    path parts. scripts/extract_faces.py mirrors the video tree, so a video
    ``<videos>/a/b/x.mp4`` becomes ``<faces>/a/b/x/<frame:06d>.png``; matching on path parts
    lets the user extract from the dataset root or from any sub-folder of it."""
    out = {}
    for dirpath, _dirnames, filenames in os.walk(faces_dir):
        if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in filenames):
            rel = Path(dirpath).relative_to(faces_dir)
            out[rel.parts] = Path(dirpath)
    return out


class AirdBuilder(tfds.core.GeneratorBasedBuilder):
    """Base: constructible directly, builds into ``data_dir`` as array_record.

    ``manual_dir`` holds what the user downloaded (split files, metadata);
    ``faces_dir`` holds the faces extracted by ``scripts/extract_faces.py``
    (layout in data/README.md). Both default under :func:`default_root`.
    """

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = ""
    IS_VIDEO = True  # the pipeline samples frames per video only for video datasets
    HOMEPAGE = ""
    CITATION = ""
    DESCRIPTION = ""

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        # tfds' own lookup needs the optional `importlib_resources` package for classes inside a
        # package; the plain file path is all it uses it for (checksums next to the code).
        return epath.Path(inspect.getfile(cls))

    def __init__(
        self,
        *,
        config: str | tfds.core.BuilderConfig | None = None,
        data_dir: str | os.PathLike | None = None,
        manual_dir: str | os.PathLike | None = None,
        faces_dir: str | os.PathLike | None = None,
        source_fingerprint: str | None = None,
        **kwargs,
    ):
        root = default_root()
        if data_dir is None:
            data_dir = root / "tfds"
        self.aird_manual_dir = Path(manual_dir) if manual_dir else root / "manual" / self.name
        self.aird_faces_dir = Path(faces_dir) if faces_dir else root / "faces" / self.name
        self.aird_source_fingerprint = source_fingerprint
        self.aird_skipped: list[dict] = []  # undecodable images of the current build
        self.aird_records: dict[str, int] = {}
        if config == "":
            config = None
        given = config
        config = self._source_config(config)
        # What __setstate__ re-runs (tfds' own record lacks the folders and fingerprint).
        self._aird_init = dict(
            config=given,
            data_dir=data_dir,
            manual_dir=self.aird_manual_dir,
            faces_dir=self.aird_faces_dir,
            source_fingerprint=self.aird_source_fingerprint,
            **kwargs,
        )
        if isinstance(config, str) and self.BUILDER_CONFIGS:
            names = [c.name for c in self.BUILDER_CONFIGS]
            if config not in names:
                raise ValueError(
                    f"Unknown config {config!r} for dataset {self.name!r}; choose from {names}."
                )
        with quiet_tfds():
            super().__init__(
                config=config, data_dir=os.fspath(data_dir), file_format="array_record", **kwargs
            )

    # Pickling (grain worker processes receive the data source, which holds its builder): tfds
    # re-runs __init__ with the arguments it recorded, which hold the config FaceFolder derives
    # from its folder and lack the folders themselves; re-run ours instead.
    def __getstate__(self) -> dict:
        return {"aird_init": self._aird_init}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state["aird_init"])

    @classmethod
    def source_key(cls, manual_dir: Path, faces_dir: Path) -> str:
        """What identifies the source material beyond its folders ("" = the folders alone).
        FaceFolder returns the content fingerprint of its folder, so a build and the
        prepared-builder cache of ``data/index.py`` follow the folder's content."""
        return ""

    def _source_config(self, config):
        """Hook: the builder config for this source (FaceFolder keys its build by content)."""
        return config

    def source_description(self) -> str:
        """The folders a build reads, for the one line printed when a build starts."""
        return f"{self.aird_faces_dir} (faces) and {self.aird_manual_dir} (lists)"

    def source_manifests(self) -> list[Path]:
        """The extraction manifests of the faces a build reads. Video builds are keyed by name
        and config, not by their faces; the build remembers these files' digests so that faces
        extracted after it are noticed (:meth:`check_not_stale`) instead of silently missing."""
        return [self.aird_faces_dir / FACES_MANIFEST]

    def manifest_digests(self) -> dict[str, str]:
        """sha256 of each existing :meth:`source_manifests` file, by path."""
        return {
            str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in self.source_manifests()
            if p.is_file()
        }

    def check_not_stale(self) -> None:
        """Raise StaleBuildError when a manifest changed since this build was made (builds made
        before manifests were recorded cannot be checked and pass)."""
        report = Path(self.data_dir) / REPORT
        then = json.loads(report.read_text()).get("manifests") if report.is_file() else None
        if then is None:
            return
        now = self.manifest_digests()
        changed = sorted(p for p in set(then) | set(now) if then.get(p) != now.get(p))
        if changed:
            raise StaleBuildError(
                f"the {self.name} build in {self.data_dir} predates the current faces ("
                f"{changed[0]} changed since it was built); remove that folder to rebuild it "
                f"from them: rm -rf {self.data_dir}"
            )

    # -- build: one line of our own instead of TFDS's download messages ----------------------
    def is_prepared(self) -> bool:
        with quiet_tfds():
            return super().is_prepared()

    def download_and_prepare(self, *args, **kwargs):
        self.aird_skipped, self.aird_records = [], {}
        with quiet_tfds():
            return super().download_and_prepare(*args, **kwargs)

    def _log_download_bytes(self) -> None:
        # Replaces TFDS's "Downloading and preparing dataset Unknown size ...": nothing is
        # downloaded, the build reads local files. Printed once the source is found (see
        # _split_generators), so a missing dataset ends in its one error message alone.
        pass

    def _announce_build(self) -> None:
        cfg = f" ({self.builder_config.name})" if self.builder_config else ""
        print(
            f"Building {self.name}{cfg} from {self.source_description()} (first use) ...",
            file=sys.stderr,
            flush=True,
        )

    def _log_download_done(self) -> None:
        counts = ", ".join(f"{s} {n}" for s, n in self.aird_records.items())
        print(f"Built {self.name}: {counts} records in {self.data_dir}.", file=sys.stderr)
        if self.aird_skipped:
            shown = "; ".join(f"{x['path']} ({x['reason']})" for x in self.aird_skipped[:5])
            more = f" and {len(self.aird_skipped) - 5} more" if len(self.aird_skipped) > 5 else ""
            print(
                f"{self.name}: skipped {len(self.aird_skipped)} undecodable image file(s), "
                f"listed in {Path(self.data_dir) / REPORT}: {shown}{more}.",
                file=sys.stderr,
                flush=True,
            )

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION or (self.__doc__ or "").strip().split("\n")[0],
            features=features(),
            homepage=self.HOMEPAGE or None,
            citation=self.CITATION or None,
            metadata=self._metadata(),
            # Records keep the generation order (integer keys), so the per-split index written
            # below maps record position -> (label, video_id, frame_index) without a scan.
            disable_shuffling=True,
        )

    def _metadata(self) -> tfds.core.MetadataDict | None:
        return None

    # -- helpers for subclasses -------------------------------------------------------------
    def missing(self, what: str) -> DatasetMissingError:
        cfg = self.builder_config.name if self.builder_config else ""
        return DatasetMissingError(
            f"Dataset {self.name!r} (config {cfg!r}): "
            f"{what}\n\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}\n\n"
            f"Looked in manual_dir={self.aird_manual_dir} and faces_dir={self.aird_faces_dir} "
            "(set data.root / $AIRD_DATA_DIR, or data.manual_dir, to point elsewhere)."
        )

    def require_file(self, *names: str) -> Path:
        """First existing file among ``names`` in the manual dir, else a clear error."""
        for n in names:
            p = self.aird_manual_dir / n
            if p.is_file():
                return p
        raise self.missing(f"none of {list(names)} found in {self.aird_manual_dir}.")

    def require_faces(self) -> Path:
        if not self.aird_faces_dir.is_dir() or not any(self.aird_faces_dir.iterdir()):
            raise self.missing(
                f"no extracted faces in {self.aird_faces_dir}. Run scripts/extract_faces.py on "
                f"the videos in {self.aird_manual_dir} first (see data/README.md)."
            )
        return self.aird_faces_dir

    def split_generators(self, videos_by_split: dict[str, list]) -> dict[str, Iterator]:
        """Generators for the non-empty splits (tfds cannot write an empty split); an empty
        split is logged, and no video at all is a clear error."""
        out = {}
        for split, videos in videos_by_split.items():
            if videos:
                out[split] = self.frames_of_videos(videos)
            else:
                logging.warning("%s: split %r has no extracted videos; left out.", self.name, split)
        if not out:
            raise self.missing(
                f"none of the listed videos has extracted faces in {self.aird_faces_dir}."
            )
        return out

    def frames_of_videos(self, videos) -> Iterator[tuple[str, dict]]:
        """Examples of many videos given as (folder, label, method, video); warns on gaps."""
        for folder, label, method, video in videos:
            yield from self.video_frames(folder, label=label, method=method, video=video)

    def video_frames(
        self, video_dir: Path, *, label: int, method: str, video: str
    ) -> Iterator[tuple[str, dict]]:
        """Yield (key, example) for every face image of one extracted video folder; the image
        is its Path (read and decode-checked by ``_indexed``)."""
        vid = video_key(method, video)
        for img in list_images(video_dir):
            fi = frame_index_from_name(img)
            yield (
                f"{vid}/{fi:06d}",
                {
                    "image": img,
                    "label": label,
                    "method": method,
                    "video_id": vid,
                    "frame_index": fi,
                },
            )

    def _splits(self, dl_manager) -> dict[str, Iterator[tuple[str, dict]]]:
        """Subclasses: {split: iterator of (unique key, example)}."""
        raise NotImplementedError

    def _split_generators(self, dl_manager):
        splits = self._splits(dl_manager)  # raises DatasetMissingError when the source is absent
        self._announce_build()
        return {s: self._indexed(s, it) for s, it in splits.items()}

    def _checked_image(self, split: str, path: Path) -> bytes | None:
        """The bytes of an image file, or None (recorded in ``aird_skipped``) when the
        pipeline's decoder cannot read it: a corrupt file is left out at build time instead of
        crashing training on its first batch."""
        try:
            data = path.read_bytes()
            decode_image(data)
            return data
        except (OSError, ValueError) as e:
            self.aird_skipped.append({"split": split, "path": str(path), "reason": str(e)})
            return None

    def _write_report(self) -> None:
        report = {
            "dataset": self.name,
            "config": self.builder_config.name if self.builder_config else "",
            "source": self.source_description(),
            "source_fingerprint": self.aird_source_fingerprint or "",
            "manifests": self.manifest_digests(),
            "records": self.aird_records,
            "skipped": self.aird_skipped,
        }
        (Path(self._data_dir) / REPORT).write_text(json.dumps(report, indent=2) + "\n")

    def _indexed(self, split: str, examples) -> Iterator[tuple[int, dict]]:
        """Yield examples under integer keys 0..N-1 and, once the split is written, save its
        index (label, video_id, frame_index, method per record) next to the records, where
        ``index.record_index`` finds it: frame sampling, class balancing and method
        filtering then never need to read a whole split of images back.

        An example whose image is a Path is read here and decode-checked; undecodable files
        are skipped and listed in the build's report; a split left empty is an error."""
        labels, vids, frames, methods, seen = [], [], [], [], set()
        i = 0
        for key, ex in examples:
            if key in seen:
                raise ValueError(f"{self.name}: duplicate example key {key!r} in split {split!r}.")
            seen.add(key)
            if isinstance(ex["image"], Path):
                data = self._checked_image(split, ex["image"])
                if data is None:
                    continue
                ex = {**ex, "image": data}
            labels.append(int(ex["label"]))
            vids.append(str(ex["video_id"]))
            frames.append(int(ex["frame_index"]))
            methods.append(str(ex["method"]))
            yield i, ex
            i += 1
        if not labels:
            bad = [x["path"] for x in self.aird_skipped if x["split"] == split]
            raise ValueError(
                f"{self.name}: every image of split {split!r} is undecodable ({len(bad)} files, "
                f"e.g. {bad[:3]}); replace or remove them and rerun."
            )
        self.aird_records[split] = len(labels)
        self._write_report()
        # During download_and_prepare, _data_dir is the incomplete folder that TFDS renames
        # into place when every split is done: the index lands with the data, atomically.
        np.savez(
            Path(self._data_dir) / f"aird_index_{split}.npz",
            label=np.asarray(labels, np.int8),
            video_id=np.asarray(vids, dtype=str),
            frame_index=np.asarray(frames, np.int32),
            method=np.asarray(methods, dtype=str),
        )

    def _generate_examples(self, items=()):
        yield from items
