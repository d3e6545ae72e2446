"""A small face_folder of PNG images for the speed benchmarks (``scripts/bench_*.py``).

Speed does not depend on what the pixels show, but decode cost does depend on the content, so
real face crops are used when ``../shared/data/ffpp_faces299`` is beside the checkout, and
scikit-image's bundled photographs (no download) otherwise. Written as PNG at the benchmark's
size, in the layout the ``face_folder`` builder reads (``real/`` and ``fake/<method>/``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SHARED_FACES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ffpp_faces299"


def make_face_folder(root: Path, n: int, size: int, source: Path = SHARED_FACES) -> str:
    """Write ``n`` ``size`` x ``size`` PNG faces under ``root`` (half real, half fake, one image
    per video folder); returns a line naming where the pixels came from."""
    files = sorted(source.glob("**/*.jpg")) if source.is_dir() else []
    if files:
        src = f"{source.name} (JPEG 299 -> PNG {size})"
        pick = [files[i] for i in np.linspace(0, len(files) - 1, n).astype(int)]
        imgs = [cv2.imread(str(p)) for p in pick]
        labels = [0 if "/real/" in p.as_posix() else 1 for p in pick]
    else:
        import skimage.data

        src = "skimage photographs (no ../shared data)"
        base = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
        rng = np.random.default_rng(0)
        imgs, labels = [], []
        for i in range(n):
            b = base[i % 3]
            y, x = rng.integers(0, 64, 2)
            imgs.append(cv2.cvtColor(b[y : y + 256, x : x + 256], cv2.COLOR_RGB2BGR))
            labels.append(i % 2)
    for i, (img, lab) in enumerate(zip(imgs, labels)):
        d = Path(root) / ("real" if lab == 0 else "fake/m") / f"v{i:05d}"
        d.mkdir(parents=True, exist_ok=True)
        small = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(d / "000000.png"), small)
    return src
