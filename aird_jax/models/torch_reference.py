"""PyTorch references for the tests and benchmarks (needs the ``reference`` extra: torch, timm).

* ``import_timm``: timm imports torchvision, whose compiled ops may not load beside the installed
  torch build (``operator torchvision::nms does not exist`` from
  ``torchvision/_meta_registrations.py``). timm's model code never touches those ops, so an empty
  stand-in for that one registration module is registered first (the rest is the real
  torchvision); if timm still fails to import, every ``torchvision.*`` module is stubbed.
* ``torch_meso4``: Meso-4 re-stated in PyTorch from the paper / the authors' Keras description,
  independently of ``aird_jax.models.baselines.mesonet``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any


class _StubMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return f"{cls.__name__}.{name}"


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _StubMeta(name, (), {})


class _TorchvisionStubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] == "torchvision":
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        mod = _StubModule(spec.name)
        mod.__path__ = []
        return mod

    def exec_module(self, module):
        pass


def import_timm() -> Any:
    """``import timm`` despite a torchvision whose compiled ops do not load (see module doc)."""
    if importlib.util.find_spec("timm") is None:
        raise ImportError("timm is not installed (pip install -e '.[test,reference]')")
    name = "torchvision._meta_registrations"
    if "torchvision" not in sys.modules and name not in sys.modules:
        sys.modules[name] = types.ModuleType(name)
    try:
        import timm
    except Exception:  # noqa: BLE001 - torchvision failed to load; retry without it
        for mod in [n for n in sys.modules if n.split(".")[0] in ("timm", "torchvision")]:
            del sys.modules[mod]
        sys.meta_path.insert(0, _TorchvisionStubFinder())
        import timm
    return timm


def torch_meso4(n_out: int, size: int) -> Any:
    """Meso-4 in PyTorch for ``size`` x ``size`` inputs; ``forward`` returns (features, logits)."""
    import torch
    from torch import nn as tnn

    class Meso4(tnn.Module):
        def __init__(self):
            super().__init__()
            spec = [(3, 8, 3, 2), (8, 8, 5, 2), (8, 16, 5, 2), (16, 16, 5, 4)]
            self.convs = tnn.ModuleList(tnn.Conv2d(i, o, k, padding=k // 2) for i, o, k, _ in spec)
            self.bns = tnn.ModuleList(tnn.BatchNorm2d(o, eps=1e-3) for _, o, _, _ in spec)
            self.pools = [p for *_, p in spec]
            side = size // 32
            self.fc = tnn.Linear(16 * side * side, 16)
            self.out = tnn.Linear(16, n_out)

        def forward(self, x):  # NCHW
            for conv, bn, p in zip(self.convs, self.bns, self.pools):
                x = torch.max_pool2d(bn(torch.relu(conv(x))), p)
            x = x.permute(0, 2, 3, 1).flatten(1)  # Keras Flatten on channels_last
            f = torch.nn.functional.leaky_relu(self.fc(x), 0.1)
            return f, self.out(f)

    return Meso4()
