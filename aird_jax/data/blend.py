"""Blended-face fakes made from real faces: Face X-ray's blended images and self-blended images.

Face X-ray (Li et al., CVPR 2020) makes a training fake by blending a *source* face into a
*target* face through a soft face-region mask ``M``: ``I = M * source + (1 - M) * target``; its
label is "fake" and its X-ray is the blending boundary ``B = 4 * M * (1 - M)`` (1 where
``M = 0.5``, 0 where the mask is flat). Self-blended images (SBI; Shiohara & Yamasaki, CVPR
2022) use a transformed copy of the target itself as the source, so the only cue left is the
blending artefact. :func:`self_blend` does SBI; :func:`blend_faces` takes any source.

Steps (every draw from the ``np.random.Generator`` passed in, in a fixed order -- the pipeline
seeds it per example from (seed, epoch, position), so a fake reproduces for any worker count):

1. **Face region** (:func:`face_region`): the convex hull of a face outline built from the five
   MTCNN landmarks (:func:`outline_from_five`). No 68/478-point landmark model is usable
   offline here (MediaPipe >= 1.0 ships no face-mesh model in its wheel and 0.10.x needs
   protobuf < 5; dlib's predictor is a separate download), so the outline is a documented
   *approximation*: twelve points at fixed multiples of the inter-ocular distance (across) and
   the eye-to-mouth distance (down) from the eye midpoint, forehead to chin and cheek to cheek,
   fitted by eye to the ArcFace five-point template (``_OUTLINE``). For our crops, which
   ``faces.py`` aligns to that template with a 30% margin, the five points are known from the
   crop geometry alone (:func:`crop_landmarks`), so no detector runs at training time.
2. **Mask deformation** (:func:`deform_mask`): a random affine map (scale, rotation,
   translation) and a smooth elastic displacement field (a coarse Gaussian grid upsampled
   bicubically), re-thresholded to a hard mask, then a Gaussian blur of random odd size
   ``k``: the soft mask ``M``. Values within 1e-6 of 0 or 1 are snapped, so ``M`` is exactly 1
   inside and 0 outside, and the X-ray is exactly 0 wherever the hard mask is constant over a
   ``k x k`` window. (SBI also scales ``M`` by a random opacity < 1; we do not, since the X-ray
   would then be non-zero over the whole face instead of marking the boundary.)
3. **Source** (:func:`transform_source`, SBI): the target shifted/scaled slightly (geometric
   misalignment), a colour mismatch (per-channel offsets, brightness, contrast) and a frequency
   mismatch (one of: none, Gaussian blur, unsharp sharpening, down-then-up resampling, JPEG).
4. **Blend** (:func:`blend`): ``round(M * source + (1 - M) * target)`` as uint8 RGB.

Cost per image (measured, 2-core CPU shared with other jobs): see README ("Blended-face training
data"); it is a few milliseconds at 224 px, all OpenCV/numpy.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from aird_jax.data.faces import aligned_template
from aird_jax.data.preprocess import jpeg_reencode

# Face outline in a face-aligned frame: x in units of the inter-ocular distance (to the image's
# right), y in units of the eye-midpoint-to-mouth-midpoint distance (down), origin at the eye
# midpoint. On the ArcFace 112-px template this spans x 14..98 and y 19..113 (forehead to chin).
_OUTLINE = np.array(
    [
        (-0.8, -0.7), (0.0, -0.8), (0.8, -0.7), (1.2, -0.2), (1.15, 0.6), (0.95, 1.15),
        (0.5, 1.45), (0.0, 1.5), (-0.5, 1.45), (-0.95, 1.15), (-1.15, 0.6), (-1.2, -0.2),
    ],
    np.float64,
)  # fmt: skip
CROP_MARGIN = 0.3  # faces.py's default: the crops this project extracts
FREQUENCY_OPS = ("none", "blur", "sharpen", "downup", "jpeg")


@dataclasses.dataclass(frozen=True)
class BlendParams:
    """Ranges of the random draws (SBI/Face X-ray-like; fractions are of the face size)."""

    mask_scale: tuple[float, float] = (0.9, 1.05)
    mask_rotate_deg: float = 6.0
    mask_shift: float = 0.03
    elastic: float = 0.03  # std of the elastic displacement, fraction of the image side
    elastic_grid: int = 4
    blur: tuple[float, float] = (0.05, 0.15)  # blur kernel size, fraction of the image side
    source_shift: float = 0.03
    source_scale: tuple[float, float] = (0.95, 1.05)
    rgb_shift: float = 20.0  # per-channel offset, uint8 units
    brightness: float = 0.1
    contrast: float = 0.1
    sharpen: tuple[float, float] = (0.3, 1.0)
    downup: tuple[float, float] = (0.35, 0.7)
    jpeg_quality: tuple[int, int] = (40, 90)


@dataclasses.dataclass(frozen=True)
class BlendResult:
    """A blended fake: ``image`` uint8 RGB, ``label`` 1, ``xray`` = 4 M (1 - M), the soft
    ``mask`` M, the deformed ``hard_mask`` (0/1) it was blurred from with ``blur_ksize``, and the
    ``source`` that was blended in."""

    image: np.ndarray
    label: int
    xray: np.ndarray
    mask: np.ndarray
    hard_mask: np.ndarray
    blur_ksize: int
    source: np.ndarray


# ------------------------------------------------------------------------------ face region
def crop_landmarks(height: int, width: int, margin: float = CROP_MARGIN) -> np.ndarray:
    """The five landmarks [5, 2] (x, y) of a face crop aligned by ``faces.py`` (known by
    construction: the template with ``margin``), for a crop of any size."""
    unit = (aligned_template(1000, margin) + 0.5) / 1000.0
    return unit * np.array([width, height], np.float64) - 0.5


def parse_landmarks(text: str) -> np.ndarray | None:
    """``data.blend_landmarks``: "" (None: the crops are ``faces.py``'s) or ten comma-separated
    numbers x1,y1,..,x5,y5 in [0, 1], the five landmarks as fractions of the crop's width and
    height (for crops made by another tool; see README). A bad value is a ValueError."""
    if not str(text).strip():
        return None
    try:
        v = np.array([float(t) for t in str(text).split(",")], np.float64)
    except ValueError:
        v = np.array([])
    if v.shape != (10,) or not np.all((v >= 0) & (v <= 1)):
        raise ValueError(
            f"data.blend_landmarks={text!r} must be '' (crops aligned by faces.py) or ten "
            "comma-separated fractions x1,y1,...,x5,y5 in [0, 1] (eyes, nose, mouth corners)"
        )
    return v.reshape(5, 2)


def outline_from_five(five: np.ndarray) -> np.ndarray:
    """Approximate face outline [12, 2] (x, y) from the five landmarks (see module doc)."""
    five = np.asarray(five, np.float64)
    eye_mid = five[:2].mean(0)
    across = five[1] - five[0]
    d = np.linalg.norm(across)
    if d == 0:
        raise ValueError("the two eye landmarks coincide; cannot build a face outline")
    v = across / d
    down = five[3:].mean(0) - eye_mid
    u = down - (down @ v) * v  # the face's vertical axis, orthogonal to the eye line
    h = np.linalg.norm(u)
    u = u / h if h > 0 else np.array([-v[1], v[0]])
    h = h if h > 0 else d
    return eye_mid + _OUTLINE[:, :1] * d * v + _OUTLINE[:, 1:] * h * u


def face_region(height: int, width: int, five: np.ndarray | None = None) -> np.ndarray:
    """Hard face-region mask, float32 [H, W] in {0, 1}: the convex hull of the outline
    (``five`` = None: the aligned crop's landmarks, :func:`crop_landmarks`)."""
    five = crop_landmarks(height, width) if five is None else five
    hull = cv2.convexHull(np.round(outline_from_five(five)).astype(np.int32))
    mask = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(np.float32)


# ------------------------------------------------------------------------------- draws
@dataclasses.dataclass(frozen=True)
class Draws:
    """Every random choice for one fake, drawn up front in a fixed order."""

    mask_affine: np.ndarray  # 2x3
    elastic: np.ndarray  # [2, g, g] displacement (pixels) on a coarse grid
    blur_ksize: int
    source_affine: np.ndarray  # 2x3
    rgb_shift: np.ndarray  # [3]
    brightness: float
    contrast: float
    frequency_op: str
    frequency_value: float


def _affine(rng: np.random.Generator, h: int, w: int, scale, deg: float, shift: float):
    s = rng.uniform(*scale)
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), rng.uniform(-deg, deg), s)
    m[:, 2] += rng.uniform(-shift, shift, 2) * (w, h)
    return m


def draw(rng: np.random.Generator, h: int, w: int, p: BlendParams = BlendParams()) -> Draws:
    """All draws for an ``h x w`` fake (fixed order: same rng state, same fake)."""
    side = min(h, w)
    mask_affine = _affine(rng, h, w, p.mask_scale, p.mask_rotate_deg, p.mask_shift)
    elastic = rng.normal(0.0, p.elastic * side, (2, p.elastic_grid, p.elastic_grid))
    k = int(round(rng.uniform(*p.blur) * side))
    blur_ksize = max(3, k | 1)  # odd, at least 3: the boundary always has a soft band
    source_affine = _affine(rng, h, w, p.source_scale, 0.0, p.source_shift)
    rgb_shift = rng.uniform(-p.rgb_shift, p.rgb_shift, 3)
    brightness = 1.0 + rng.uniform(-p.brightness, p.brightness)
    contrast = 1.0 + rng.uniform(-p.contrast, p.contrast)
    op = FREQUENCY_OPS[int(rng.integers(len(FREQUENCY_OPS)))]
    ranges = {"none": (0.0, 0.0), "blur": (0.5, 1.5), "sharpen": p.sharpen, "downup": p.downup}
    ranges["jpeg"] = p.jpeg_quality
    value = float(rng.uniform(*ranges[op]))
    return Draws(mask_affine, elastic, blur_ksize, source_affine, rgb_shift, brightness,
                 contrast, op, value)  # fmt: skip


# ----------------------------------------------------------------------------- transforms
def deform_mask(hard: np.ndarray, d: Draws) -> tuple[np.ndarray, np.ndarray]:
    """(deformed hard mask {0, 1}, soft mask M in [0, 1]), both float32 [H, W]."""
    h, w = hard.shape
    m = cv2.warpAffine(hard, d.mask_affine, (w, h), flags=cv2.INTER_LINEAR)
    dx, dy = (cv2.resize(f.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
              for f in d.elastic)  # fmt: skip
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    m = cv2.remap(m, xs + dx, ys + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    deformed = (m > 0.5).astype(np.float32)
    k = d.blur_ksize
    # Replicated border: a face touching the edge stays flat there (no spurious boundary).
    soft = cv2.GaussianBlur(deformed, (k, k), 0, borderType=cv2.BORDER_REPLICATE)
    soft = np.clip(soft, 0.0, 1.0)
    soft[soft < 1e-6] = 0.0  # float rounding of the kernel sum: exactly flat away from edges
    soft[soft > 1.0 - 1e-6] = 1.0
    return deformed, soft


def _frequency(rgb: np.ndarray, op: str, value: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    if op == "blur":
        return cv2.GaussianBlur(rgb, (0, 0), value)
    if op == "sharpen":
        blurred = cv2.GaussianBlur(rgb, (0, 0), 1.0).astype(np.float32)
        out = rgb.astype(np.float32) * (1 + value) - value * blurred
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if op == "downup":
        small = (max(1, round(w * value)), max(1, round(h * value)))
        down = cv2.resize(rgb, small, interpolation=cv2.INTER_AREA)
        return cv2.resize(down, (w, h), interpolation=cv2.INTER_LINEAR)
    if op == "jpeg":
        return jpeg_reencode(rgb, int(round(value)))
    return rgb


def transform_source(target: np.ndarray, d: Draws) -> np.ndarray:
    """SBI's source: the target misaligned slightly, colour- and frequency-mismatched."""
    h, w = target.shape[:2]
    src = cv2.warpAffine(target, d.source_affine, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT101)  # fmt: skip
    x = src.astype(np.float32) * np.float32(d.brightness) + d.rgb_shift.astype(np.float32)
    mean = x.mean(axis=(0, 1), keepdims=True)
    x = (x - mean) * np.float32(d.contrast) + mean
    src = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return _frequency(src, d.frequency_op, d.frequency_value)


def blend(target: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``round(M * source + (1 - M) * target)`` as uint8 RGB (``mask`` [H, W] in [0, 1])."""
    m = mask.astype(np.float32)[..., None]
    out = m * source.astype(np.float32) + (np.float32(1.0) - m) * target.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def xray(mask: np.ndarray) -> np.ndarray:
    """The face X-ray of a soft mask: ``4 M (1 - M)`` (float32)."""
    m = mask.astype(np.float32)
    return np.float32(4.0) * m * (np.float32(1.0) - m)


# ---------------------------------------------------------------------------------- entry
def blend_faces(
    target: np.ndarray,
    source: np.ndarray,
    rng: np.random.Generator,
    landmarks: np.ndarray | None = None,
    params: BlendParams = BlendParams(),
) -> BlendResult:
    """Blend ``source`` (already the source face, aligned to ``target``) into ``target``
    through a deformed soft face mask (Face X-ray's blended image)."""
    target = _check_rgb(target, "target")
    source = _check_rgb(source, "source")
    if source.shape != target.shape:
        raise ValueError(f"source {source.shape} and target {target.shape} shapes differ")
    h, w = target.shape[:2]
    d = draw(rng, h, w, params)
    return _blend_with(target, source, d, landmarks)


def self_blend(
    target: np.ndarray,
    rng: np.random.Generator,
    landmarks: np.ndarray | None = None,
    params: BlendParams = BlendParams(),
) -> BlendResult:
    """A self-blended image (SBI): the source is a transformed copy of ``target``."""
    target = _check_rgb(target, "target")
    d = draw(rng, *target.shape[:2], params)
    return _blend_with(target, transform_source(target, d), d, landmarks)


def _blend_with(target, source, d: Draws, landmarks) -> BlendResult:
    h, w = target.shape[:2]
    hard, soft = deform_mask(face_region(h, w, landmarks), d)
    return BlendResult(
        image=blend(target, source, soft), label=1, xray=xray(soft), mask=soft,
        hard_mask=hard, blur_ksize=d.blur_ksize, source=source,
    )  # fmt: skip


def _check_rgb(rgb: np.ndarray, what: str) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"{what} must be uint8 RGB [H, W, 3], got {rgb.dtype} {rgb.shape}")
    return rgb


def sbi_example(
    rgb: np.ndarray, key: tuple[int, ...], landmarks: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """One training example of the SBI protocol from a real face and its pipeline key
    (seed, epoch, position): (image, soft mask M, label). With probability 1/2 (its own stream,
    ``(*key, 3)``) a self-blended fake (label 1), otherwise the real face with M = 0.
    ``landmarks``: [5, 2] fractions of the crop (:func:`parse_landmarks`), None = aligned crop."""
    rng = np.random.default_rng([*key, 3])
    if rng.random() < 0.5:
        return rgb, np.zeros(rgb.shape[:2], np.float32), 0
    h, w = rgb.shape[:2]
    five = None if landmarks is None else landmarks * (w, h) - 0.5
    fake = self_blend(rgb, rng, five)
    return fake.image, fake.mask, 1
