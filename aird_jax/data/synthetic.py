"""The embedded default dataset: natural patches vs. learned bottleneck-upsample reconstructions.

Why it exists: the paper's hypothesis is that every generator that rebuilds an image from a
low-resolution bottleneck leaves upsampling traces. This module makes a miniature of that
setting with no download, in well under two minutes on two CPU cores:

* real  = patches cut from the natural photographs that ship inside scikit-image
  (``skimage.data``), at one or two scales;
* fake  = the SAME patches passed through a small encoder (two stride-2 convolutions into a
  narrow bottleneck) and a decoder whose two x2 upsampling steps come from one of four
  families: ``transposed_conv``, ``nearest_conv``, ``bilinear_conv``, ``pixel_shuffle``.
  Each generator is fitted briefly (Adam, MSE) on the training patches at build time, so the
  fakes are genuine learned reconstructions, not hand-made filters.
* both classes are JPEG re-encoded at the same quality, so file format is no shortcut.

Patches are sampled inside disjoint 2P x 2P cells of each source image; cells (not patches)
are assigned to train / val / test, so no pixel of a test patch was seen in training, by the
detector or by the generators. It is a sanity benchmark of the mechanism, NOT a substitute
for FaceForensics++ (see data/README.md).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import cv2
import numpy as np

FAMILIES = ("transposed_conv", "nearest_conv", "bilinear_conv", "pixel_shuffle")

# Natural photographs bundled with scikit-image (no network). Synthetic drawings (colorwheel,
# logo, text, page, horse) are left out: they are not the kind of content detectors see.
SOURCE_IMAGES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "brick",
    "camera",
    "grass",
    "gravel",
    "moon",
    "coins",
    "clock",
    "cell",
)


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Everything that determines the dataset's bytes (together with the library versions)."""

    patch_size: int = 64
    crops_per_cell: int = 12
    scales: tuple[float, ...] = (1.0, 0.5)
    split_fractions: tuple[float, float, float] = (0.6, 0.1, 0.3)  # train, val, test cells
    train_families: tuple[str, ...] = ("transposed_conv", "nearest_conv")
    heldout_families: tuple[str, ...] = ("bilinear_conv", "pixel_shuffle")
    bottleneck_channels: int = 8
    width: int = 16
    fit_steps: int = 200
    fit_batch: int = 32
    fit_crop: int = 32  # generators are fully convolutional: fit on small crops (4x cheaper)
    learning_rate: float = 2e-3
    jpeg_quality: int = 90
    seed: int = 0
    max_patches_per_split: int = 0  # 0 = no cap (tests use a small cap)

    def __post_init__(self):
        unknown = set(self.train_families + self.heldout_families) - set(FAMILIES)
        if unknown:
            raise ValueError(
                f"Unknown generator families {sorted(unknown)}; choose from {FAMILIES}."
            )
        if self.patch_size % 4:
            raise ValueError(f"patch_size must be a multiple of 4, got {self.patch_size}.")


def _load_source(name: str) -> np.ndarray:
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


def cut_patches(spec: SyntheticSpec) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Return {"train"|"val"|"test": (uint8 [N,P,P,3], patch ids)} from disjoint cells."""
    p = spec.patch_size
    cell = 2 * p
    rng = np.random.default_rng([spec.seed, 1])
    cells = []  # (image name, scale index, scaled image, y0, x0)
    for name in SOURCE_IMAGES:
        img = _load_source(name)
        for si, s in enumerate(spec.scales):
            scaled = img
            if s != 1.0:
                h, w = img.shape[:2]
                scaled = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
            h, w = scaled.shape[:2]
            for cy in range(h // cell):
                for cx in range(w // cell):
                    cells.append((name, si, scaled, cy * cell, cx * cell))
    order = rng.permutation(len(cells))
    n = len(cells)
    n_train = int(round(spec.split_fractions[0] * n))
    n_val = int(round(spec.split_fractions[1] * n))
    assignment = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    out = {}
    for split, idx in assignment.items():
        patches, ids = [], []
        for ci in sorted(idx.tolist()):
            name, si, scaled, y0, x0 = cells[ci]
            offs = rng.integers(0, cell - p + 1, size=(spec.crops_per_cell, 2))
            for k, (dy, dx) in enumerate(offs):
                patches.append(scaled[y0 + dy : y0 + dy + p, x0 + dx : x0 + dx + p])
                ids.append(f"{name}_s{si}_c{ci:04d}_{k:02d}")
        arr = np.stack(patches)
        if spec.max_patches_per_split and len(arr) > spec.max_patches_per_split:
            keep = np.sort(rng.permutation(len(arr))[: spec.max_patches_per_split])
            arr, ids = arr[keep], [ids[i] for i in keep]
        out[split] = (arr, ids)
    return out


def _make_generator(family: str, width: int, bottleneck: int):
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    def upsample(x, feats: int, name: str):
        b, h, w, c = x.shape
        if family == "transposed_conv":
            # kernel 3, stride 2: uneven overlap, the classic checkerboard source.
            return nn.ConvTranspose(feats, (3, 3), strides=(2, 2), padding="SAME", name=name)(x)
        if family == "nearest_conv":
            x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
            return nn.Conv(feats, (3, 3), name=name)(x)
        if family == "bilinear_conv":
            x = jax.image.resize(x, (b, 2 * h, 2 * w, c), method="bilinear")
            return nn.Conv(feats, (3, 3), name=name)(x)
        if family == "pixel_shuffle":
            x = nn.Conv(4 * feats, (3, 3), name=name)(x)
            x = x.reshape(b, h, w, 2, 2, feats).transpose(0, 1, 3, 2, 4, 5)
            return x.reshape(b, 2 * h, 2 * w, feats)
        raise ValueError(family)

    class Generator(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(width, (3, 3), name="enc0")(x))
            x = nn.relu(nn.Conv(width, (4, 4), strides=(2, 2), name="enc1")(x))
            x = nn.Conv(bottleneck, (4, 4), strides=(2, 2), name="bottleneck")(x)
            x = nn.relu(upsample(nn.relu(x), width, "up1"))
            x = nn.relu(upsample(x, width, "up2"))
            return nn.Conv(3, (3, 3), name="out")(x)

    return Generator()


def fit_generator(
    family: str, train_patches: np.ndarray, spec: SyntheticSpec, family_index: int
) -> tuple[object, dict, float]:
    """Fit one generator briefly on the training patches; return (module, params, final MSE)."""
    import jax
    import jax.numpy as jnp
    import optax

    model = _make_generator(family, spec.width, spec.bottleneck_channels)
    key = jax.random.key(spec.seed * 1000 + family_index)
    p = spec.patch_size
    c = min(spec.fit_crop, p) if spec.fit_crop else p
    params = model.init(key, jnp.zeros((1, c, c, 3), jnp.float32))["params"]
    tx = optax.adam(spec.learning_rate)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x):
        def loss_fn(pr):
            return jnp.mean((model.apply({"params": pr}, x) - x) ** 2)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng([spec.seed, 2, family_index])
    loss = np.nan
    for _ in range(spec.fit_steps):
        idx = rng.integers(0, len(train_patches), size=spec.fit_batch)
        y0, x0 = rng.integers(0, p - c + 1, size=2) // 4 * 4  # keep the 4-px stride grid
        x = train_patches[idx, y0 : y0 + c, x0 : x0 + c].astype(np.float32) / 255.0
        params, opt_state, loss = step(params, opt_state, x)
    return model, params, float(loss)


def reconstruct(model, params, patches: np.ndarray, batch: int = 256) -> np.ndarray:
    """Run a fitted generator over uint8 patches; uint8 output (rounded, clipped)."""
    import jax

    fwd = jax.jit(lambda x: model.apply({"params": params}, x))
    outs = []
    for i in range(0, len(patches), batch):
        chunk = patches[i : i + batch].astype(np.float32) / 255.0
        n = len(chunk)
        if n < batch:  # pad to a fixed shape: one compilation
            chunk = np.concatenate([chunk, np.zeros((batch - n,) + chunk.shape[1:], np.float32)])
        y = np.asarray(fwd(chunk))[:n]
        outs.append(np.clip(np.rint(y * 255.0), 0, 255).astype(np.uint8))
    return np.concatenate(outs)


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:  # pragma: no cover
        raise RuntimeError("OpenCV failed to JPEG-encode a patch.")
    return buf.tobytes()


@dataclasses.dataclass
class Example:
    image: bytes
    label: int
    method: str
    video_id: str


def _families_for(split: str, spec: SyntheticSpec) -> Sequence[str]:
    return spec.heldout_families if split == "test_heldout" else spec.train_families


@functools.lru_cache(maxsize=2)
def make_dataset(spec: SyntheticSpec) -> dict[str, list[Example]]:
    """Build all splits in memory (a few thousand small JPEGs).

    Pairs: every real patch of a split has exactly one fake, made by the split's families in
    turn (patch i -> family i mod 2), so classes are balanced and paired like FF++.
    ``test_indomain`` and ``test_heldout`` share the same real test patches: any difference
    between them comes from the generator families alone.
    """
    patches = cut_patches(spec)
    train_real = patches["train"][0]
    generators = {}
    for fi, fam in enumerate(FAMILIES):
        if fam in spec.train_families or fam in spec.heldout_families:
            model, params, _ = fit_generator(fam, train_real, spec, fi)
            generators[fam] = (model, params)
    out: dict[str, list[Example]] = {}
    for split, src in (
        ("train", "train"),
        ("val", "val"),
        ("test_indomain", "test"),
        ("test_heldout", "test"),
    ):
        real, ids = patches[src]
        fams = _families_for(split, spec)
        fake = np.empty_like(real)
        assign = np.arange(len(real)) % len(fams)
        for k, fam in enumerate(fams):
            sel = np.nonzero(assign == k)[0]
            if len(sel):
                fake[sel] = reconstruct(*generators[fam], real[sel])
        exs = []
        for i, pid in enumerate(ids):
            exs.append(Example(encode_jpeg(real[i], spec.jpeg_quality), 0, "real", f"real/{pid}"))
            fam = fams[assign[i]]
            exs.append(Example(encode_jpeg(fake[i], spec.jpeg_quality), 1, fam, f"{fam}/{pid}"))
        out[split] = exs
    return out
