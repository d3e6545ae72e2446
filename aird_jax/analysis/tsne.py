"""Figure 3: t-SNE of the projection-head embeddings, coloured by real / method, with cluster
separation measured on the embeddings themselves (silhouette scores), not on the 2-D picture.

"Fakes merge into one cluster" (the paper's claim for the contrastive term) means: a low
silhouette of the methods among the fakes, and a high real-vs-fake silhouette.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score
from threadpoolctl import threadpool_limits

from aird_jax.analysis import figio


def separation(embeddings: np.ndarray, methods: np.ndarray) -> dict[str, float | None]:
    """Silhouette (Euclidean; the embeddings are L2-normalised) of the methods among the fakes
    and of real vs fake. None where undefined (fewer than 2 groups, or a group per sample)."""
    emb = np.asarray(embeddings, np.float64)
    methods = np.asarray(methods).astype(str)
    fake = methods != "real"

    def sil(x: np.ndarray, groups: np.ndarray) -> float | None:
        k = len(np.unique(groups))
        return float(silhouette_score(x, groups)) if 2 <= k < len(groups) else None

    return {
        "silhouette_methods_among_fakes": sil(emb[fake], methods[fake]),
        "silhouette_real_vs_fake": sil(emb, np.where(fake, "fake", "real")),
        "n_real": int(np.sum(~fake)),
        "n_fake": int(np.sum(fake)),
    }


def embed_2d(embeddings: np.ndarray, seed: int) -> np.ndarray:
    """Seeded t-SNE (PCA init); perplexity shrunk for small sets (it must be < n)."""
    n = len(embeddings)
    if n < 3:
        return np.zeros((n, 2))
    perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
    tsne = TSNE(2, perplexity=perplexity, init="pca", random_state=seed, learning_rate="auto")
    # One OpenMP thread: on a busy CPU, sklearn's spinning threads made a 24-point t-SNE take
    # 20-40 s instead of 0.2 s (measured); it also keeps the result independent of core count.
    with threadpool_limits(limits=1):
        return tsne.fit_transform(np.asarray(embeddings, np.float64))


def _colours(names: list[str]) -> dict[str, str]:
    cmap = plt.get_cmap("tab10")
    fakes = [n for n in names if n != "real"]
    out = {"real": "black"}
    out.update({n: cmap(i % 10) for i, n in enumerate(fakes)})
    return out


def plot(panels: list[dict], stem: Path) -> tuple[Path, Path]:
    """One panel per run: ``{"title", "xy", "methods", "separation"}``; the numbers beside."""
    names = sorted({m for p in panels for m in p["methods"]}, key=lambda m: (m != "real", m))
    col = _colours(names)
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 7), squeeze=False)
    for ax, p in zip(axes[0], panels):
        xy, methods = np.asarray(p["xy"]), np.asarray(p["methods"])
        for m in names:
            sel = methods == m
            if sel.any():
                mark = "o" if m == "real" else "^"
                ax.scatter(*xy[sel].T, s=18, c=[col[m]], marker=mark, label=f"{m} ({sel.sum()})")
        s = p["separation"]
        txt = (
            f"silhouette, methods among fakes: {_fmt(s['silhouette_methods_among_fakes'])}\n"
            f"silhouette, real vs fake: {_fmt(s['silhouette_real_vs_fake'])}"
        )
        ax.text(0.01, 0.99, txt, transform=ax.transAxes, va="top", fontsize=10,
                bbox={"fc": "white", "alpha": 0.8})  # fmt: skip
        ax.set_title(p["title"])
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.legend(loc="lower right", fontsize=9)
    fig.suptitle("t-SNE of projection-head embeddings (silhouettes on the embeddings, not 2-D)")
    return figio.save(fig, stem, {"panels": panels})


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.3f}"
