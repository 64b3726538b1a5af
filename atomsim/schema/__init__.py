"""Typed, versioned, validated formats: Scenario, Profile, Plan, Trace. Stdlib + pydantic + yaml only."""
from .names import BACKENDS, MODELS, POLICIES, PRESETS, TASKS  # noqa: F401
