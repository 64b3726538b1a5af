"""Quantization backends (paper appendix C): Linear and Embedding layers only, never the conv.

- `torchao-int8`: torchao `Int8DynamicActivationInt8WeightConfig` on nn.Linear, plus
  `Int8WeightOnlyConfig` on nn.Embedding (torchao has no dynamic-activation embedding).
- `torchao-int8-weight-only`: `Int8WeightOnlyConfig` on nn.Linear and nn.Embedding.
- `torch-dynamic-int8`: `torch.ao.quantization.quantize_dynamic({nn.Linear}, qint8)` with the
  engine fbgemm on x86 and qnnpack on ARM (torch's dynamic quantization has no Embedding path).

Tied embeddings (Llama lm_head = embed_tokens, BERT decoder = word embeddings): quantizing
unties them: the embedding becomes an int8 weight-only table and the lm head an int8 Linear of
its own (both on disk; the paper quantizes "Linear and Embedding" layers, and torchao cannot
share one quantized tensor between F.embedding and F.linear under different configs).

Enum fields of torchao's tensors (`MappingType`): Python 3.11.0-3.11.4 (Debian 12's 3.11.2)
pickle an enum member as `getattr(Cls, name)`, which `torch.load(weights_only=True)` refuses.
`PICKLE` saves them as `Cls(value)` on every Python (the form later Pythons write, so a build is
byte-identical across them); `allow_enum_by_name` lets files already saved the old way load,
admitting `getattr` only for the member names of `LOADABLE_ENUMS`.
"""
from __future__ import annotations

import enum
import pickle
import platform
import types
import warnings

import torch
from torch import nn


def engine() -> str:
    m = platform.machine().lower()
    return "qnnpack" if m in ("arm64", "aarch64") or m.startswith("arm") else "fbgemm"


def set_engine() -> str:
    e = engine()
    if e in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = e
    return torch.backends.quantized.engine


def engine_used(quant: str | None) -> str | None:
    """The engine a loaded module of `quant` runs its ops on in this process: torch's quantized
    engine for torch-dynamic-int8 (what `set_engine` chose when it loaded), "torchao" for torchao's
    tensor subclasses (their kernels never consult torch.backends.quantized), None for fp32."""
    if quant == "torch-dynamic-int8":
        return torch.backends.quantized.engine
    if quant in ("torchao-int8", "torchao-int8-weight-only"):
        return "torchao"
    return None


def _untie(m: nn.Module) -> None:
    """Give every tied parameter its own Parameter object (so each layer is quantized alone)."""
    seen = {}
    for mod in m.modules():
        for name, p in list(mod._parameters.items()):
            if p is None:
                continue
            if id(p) in seen:
                mod._parameters[name] = nn.Parameter(p.detach().clone(), requires_grad=False)
            else:
                seen[id(p)] = True


def _embedding_filter(mod, fqn: str) -> bool:
    # CLIP's position table (257 x 1024, 0.1% of the encoder) stays float: interpolating it for
    # other frame sizes reshapes the weight itself, which torchao's Int8Tensor does not support.
    return isinstance(mod, nn.Embedding) and not fqn.endswith("embeddings.position_embedding")


def quantize(m: nn.Module, quant: str) -> nn.Module:
    """Quantize a filled float module in place (build time only; loading never calls this)."""
    if quant == "fp32":
        return m
    _untie(m)
    if quant in ("torchao-int8", "torchao-int8-weight-only"):
        from torchao.quantization import (Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig,
                                          quantize_)
        lin_cfg = Int8DynamicActivationInt8WeightConfig() if quant == "torchao-int8" else Int8WeightOnlyConfig()
        quantize_(m, lin_cfg, filter_fn=lambda mod, fqn: isinstance(mod, nn.Linear))
        quantize_(m, Int8WeightOnlyConfig(), filter_fn=_embedding_filter)
        return m
    if quant == "torch-dynamic-int8":
        set_engine()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(m, {nn.Linear}, dtype=torch.qint8, inplace=True)
    raise ValueError(quant)


class _EnumByValuePickler(pickle.Pickler):
    def reducer_override(self, obj):
        if isinstance(obj, enum.Enum):
            return type(obj), (obj._value_,)
        return NotImplemented


# A pickle module for torch.save(pickle_module=PICKLE): enum members by value on every Python.
PICKLE = types.SimpleNamespace(__name__="atomsim.models.quant.PICKLE", Pickler=_EnumByValuePickler,
                               dump=pickle.dump, Unpickler=pickle.Unpickler, load=pickle.load)


def loadable_enums() -> tuple:
    """The enum classes whose members atomsim's saved torchao tensors hold."""
    from torchao.quantization.quant_primitives import MappingType
    return (MappingType,)


def _enum_member(cls, name):
    """`getattr` as the weights-only unpickler sees it: an enum member of `loadable_enums()`, and
    nothing else (no other attribute, no other class)."""
    if not any(cls is e for e in loadable_enums()) or not isinstance(name, str) \
            or name not in cls.__members__:
        raise pickle.UnpicklingError(f"getattr({cls!r}, {name!r}) refused: atomsim admits getattr only "
                                     f"for the members of {[e.__name__ for e in loadable_enums()]}")
    return cls.__members__[name]


def allow_enum_by_name() -> None:
    """Admit `builtins.getattr` in weights-only loads as `_enum_member` (process-wide and idempotent:
    the `safe_globals` context manager would race between loads in two lane threads)."""
    torch.serialization.add_safe_globals([(_enum_member, "builtins.getattr")])


def swap_dynamic_structure(m: nn.Module) -> None:
    """Replace every nn.Linear (meta params) by an empty dynamic-quantized Linear, so that
    `load_state_dict` of a saved `torch-dynamic-int8` state fills it without any float copy.
    The placeholder packs a 1x1 weight, not a full-size one of zeros: the load then packs each
    weight once, with no second packed copy to free (`check_dynamic_shapes` after the load)."""
    import torch.ao.nn.quantized.dynamic as nnqd
    set_engine()
    for mod in list(m.modules()):
        for name, child in list(mod._modules.items()):
            if type(child) is nn.Linear:
                q = nnqd.Linear(1, 1, bias_=child.bias is not None, dtype=torch.qint8)
                q.in_features, q.out_features = child.in_features, child.out_features
                mod._modules[name] = q


def check_dynamic_shapes(m: nn.Module) -> list[str]:
    """The dynamic-quantized Linears whose packed weight is not (out_features, in_features):
    placeholders that the state dict did not fill."""
    import torch.ao.nn.quantized.dynamic as nnqd
    return [n for n, mod in m.named_modules() if isinstance(mod, nnqd.Linear)
            and tuple(mod.weight().shape) != (mod.out_features, mod.in_features)]
