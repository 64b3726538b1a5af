"""The validator: run a scenario for real, simulate the same plan with a profile, compare.

    rows = validate_suite(scenarios, profile, videos, out_dir)
"""
from .compare import compare_runs, error_pct, reduction_pct, summarize_errors  # noqa: F401
