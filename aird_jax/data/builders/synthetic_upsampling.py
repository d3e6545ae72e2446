"""``synthetic_upsampling``: the embedded default dataset (see aird_jax.data.synthetic)."""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from aird_jax.data import synthetic
from aird_jax.data.builders.base import AirdBuilder


class SyntheticUpsamplingConfig(tfds.core.BuilderConfig):
    """A builder config that carries a :class:`synthetic.SyntheticSpec`.

    Custom sizes::

        cfg = SyntheticUpsamplingConfig.make("p80", patch_size=80)
        SyntheticUpsampling(config=cfg, data_dir=...)
    """

    def __init__(self, *, spec: synthetic.SyntheticSpec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec

    @classmethod
    def make(cls, name: str, description: str = "", **spec_fields) -> SyntheticUpsamplingConfig:
        return cls(
            name=name,
            description=description or f"custom spec {spec_fields}",
            spec=synthetic.SyntheticSpec(**spec_fields),
        )


_CONFIGS = [
    SyntheticUpsamplingConfig.make(
        "default", "64x64 patches, ~4.4k train images; quick CPU training (the quickstart)."
    ),
    SyntheticUpsamplingConfig.make(
        "p96", "96x96 patches (fewer cells per image).", patch_size=96, crops_per_cell=20
    ),
    SyntheticUpsamplingConfig.make(
        "tiny",
        "32x32 patches, capped at 64 per split, 100 fit steps: for tests.",
        patch_size=32,
        crops_per_cell=2,
        fit_steps=100,
        width=8,
        max_patches_per_split=64,
    ),
]


class SyntheticUpsampling(AirdBuilder):
    """Natural patches (real) vs. learned bottleneck-then-upsample reconstructions (fake).

    Splits: ``train`` / ``val`` (fakes from ``spec.train_families``), ``test_indomain``
    (same families, unseen patches) and ``test_heldout`` (``spec.heldout_families``): a
    miniature of "train on FF++, test on an unseen generator". Deterministic from
    ``spec.seed``. A sanity benchmark of the mechanism, not a substitute for FF++.
    """

    name = "synthetic_upsampling"
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = _CONFIGS
    DEFAULT_CONFIG_NAME = "default"
    IS_VIDEO = False

    def _metadata(self) -> tfds.core.MetadataDict:
        return tfds.core.MetadataDict(
            spec=dataclasses.asdict(self.builder_config.spec),
            source_images=list(synthetic.SOURCE_IMAGES),
        )

    def _splits(self, dl_manager):
        data = synthetic.make_dataset(self.builder_config.spec)
        return {split: self._examples(exs) for split, exs in data.items()}

    def _examples(self, exs):
        for i, ex in enumerate(exs):
            yield (
                f"{i:07d}",
                {
                    "image": ex.image,
                    "label": ex.label,
                    "method": ex.method,
                    "video_id": ex.video_id,
                    "frame_index": 0,
                },
            )
