"""Five-point similarity alignment and cropping of the most confident face (paper Section IV-B).

The paper: "Face extraction uses MTCNN with confidence threshold 0.95. Five-point landmarks
enable alignment to canonical frontal pose. Faces crop with 30% margin around detected boxes
and resize to 224x224 pixels."

Detector: the MTCNN cascade in :mod:`aird_jax.data.mtcnn`; the paper's 0.95 threshold is applied
here, to the final O-Net score.

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

Whole videos and datasets (the resumable extraction job) live in :mod:`aird_jax.data.extract`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from aird_jax.data.mtcnn import MTCNN

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "LANDMARK_NAMES",
    "FaceCrop",
    "FaceExtractor",
    "aligned_template",
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
