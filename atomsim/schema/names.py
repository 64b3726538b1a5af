"""The names the parts share (docs/internals.md). atomsim.models checks it agrees with these."""

PRESETS = ("paper", "small", "tiny")
MODELS = ("video-encoder", "decoder", "bert-decoder", "sentence-encoder")
BACKENDS = ("fp32", "torchao-int8", "torchao-int8-weight-only", "torch-dynamic-int8")
EXECUTORCH_BACKENDS = ("executorch-xnnpack", "executorch-xnnpack-int8")   # .pte programs (XNNPACK)
TASKS = ("retrieval", "assembly", "summarization", "qa")
POLICIES = ("reload", "reuse-serial", "reuse-parallel", "baseline-resident")
# Ops, module kinds and what each op takes: schema/ops.py (the one table).
