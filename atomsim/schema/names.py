"""The names the parts share (docs/internals.md). atomsim.models checks it agrees with these."""

PRESETS = ("paper", "small", "tiny")
MODELS = ("video-encoder", "decoder", "bert-decoder", "sentence-encoder")
BACKENDS = ("fp32", "torchao-int8", "torchao-int8-weight-only", "torch-dynamic-int8")
EXECUTORCH_BACKENDS = ("executorch-xnnpack", "executorch-xnnpack-int8")   # .pte programs (XNNPACK)
TASKS = ("retrieval", "assembly", "summarization", "qa")
FIXED_POLICIES = ("reload", "reuse-serial", "reuse-parallel", "baseline-resident")
# load when a phase needs a module, keep while the plan fits the device's RAM, evict by a rule
# (plan/budget.py); `budget-optimal`: the fewest reload seconds over every resident set (exact)
BUDGET_POLICIES = ("budget-lru", "budget-cost", "budget-belady", "budget-optimal")
POLICIES = FIXED_POLICIES + BUDGET_POLICIES
# Ops, module kinds and what each op takes: schema/ops.py (the one table).
