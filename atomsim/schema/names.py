"""The names the parts share (docs/internals.md). atomsim.models checks it agrees with these."""

PRESETS = ("paper", "small", "tiny")
MODELS = ("video-encoder", "decoder", "bert-decoder", "sentence-encoder")
BACKENDS = ("fp32", "torchao-int8", "torchao-int8-weight-only", "torch-dynamic-int8")
EXECUTORCH_BACKENDS = ("executorch-xnnpack", "executorch-xnnpack-int8")   # .pte programs (XNNPACK)
TASKS = ("retrieval", "assembly", "summarization", "qa")
POLICIES = ("reload", "reuse-serial", "reuse-parallel", "baseline-resident")
# Table 3's columns, plus the steps that are not in it.
STAGES = ("load", "encode", "caption", "index", "rank", "script", "assemble", "free")
OPS = ("encode", "caption", "generate", "embed", "rank", "assemble")
# Ops that need no module: cost comes from the profile's "pipeline" entry or is taken as zero.
MODULELESS_OPS = ("rank", "assemble")
LANES = ("main", "encoder", "decoder")
