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
"""
from __future__ import annotations

import platform
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


def swap_dynamic_structure(m: nn.Module) -> None:
    """Replace every nn.Linear (meta params) by an empty dynamic-quantized Linear, so that
    `load_state_dict` of a saved `torch-dynamic-int8` state fills it without any float copy."""
    import torch.ao.nn.quantized.dynamic as nnqd
    set_engine()
    for mod in list(m.modules()):
        for name, child in list(mod._modules.items()):
            if type(child) is nn.Linear:
                q = nnqd.Linear(child.in_features, child.out_features, bias_=child.bias is not None,
                                dtype=torch.qint8)
                mod._modules[name] = q
