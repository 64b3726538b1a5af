"""atomsim.profile: measure what each module costs on this device (load, ops, memory) into a Profile.

    from atomsim.profile import measure
    prof = measure("tiny", quick=True, out="profiles/host-tiny.json")

The measuring happens in worker processes (`atomsim.profile.worker`); this package imports no
torch at import time.
"""
from .measure import DEFAULT_SHAPE, measure, op_shapes  # noqa: F401
from .summary import instability  # noqa: F401

__all__ = ["measure", "instability", "op_shapes", "DEFAULT_SHAPE"]
