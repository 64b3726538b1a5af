"""The validator's arithmetic, on summaries whose errors are known."""
import pytest

from atomsim.validate.compare import compare_runs, error_pct, range_error_pct, reduction_pct, reductions, summarize_errors
from atomsim.validate.markdown import fidelity_markdown


def summary(policy, e2e, peak, **stages):
    return {"task": "assembly", "policy": policy, "e2e_s": e2e, "peak_bytes": peak, "stage_totals_s": stages}


def test_error_and_reduction_signs():
    assert error_pct(10.0, 11.0) == pytest.approx(10.0)
    assert error_pct(10.0, 9.0) == pytest.approx(-10.0)
    assert error_pct(0.0, 1.0) is None
    assert reduction_pct(40.0, 30.0) == pytest.approx(25.0)


def test_a_range_errs_only_outside_it_against_its_nearer_end():
    assert range_error_pct(1200.0, 1199.0, 1275.0) == 0.0
    assert range_error_pct(1290.0, 1199.0, 1275.0) == pytest.approx(100 * (1275 - 1290) / 1290)
    assert range_error_pct(1100.0, 1199.0, 1275.0) == pytest.approx(9.0)
    assert range_error_pct(1100.0, 1199.0, None) == pytest.approx(9.0)   # no top: the peak alone
    assert range_error_pct(0.0, 1.0, 2.0) is None
    row = compare_runs("p", summary("reuse-parallel", 1.0, 1250), {**summary("reuse-parallel", 1.0, 1199),
                                                                    "peak_high_bytes": 1275})
    assert row["peak_range_error_pct"] == 0.0 and row["peak_error_pct"] == pytest.approx(100 * (1199 - 1250) / 1250)


def test_compare_rows_and_reductions():
    m_reload, s_reload = summary("reload", 40.0, 2e9, load=10.0, encode=5.0), summary("reload", 42.0, 2.1e9, load=11.0, encode=5.0)
    m_par, s_par = summary("reuse-parallel", 30.0, 2e9), summary("reuse-parallel", 30.0, 1.8e9)
    rows = [compare_runs("a-reload", m_reload, s_reload), compare_runs("a-par", m_par, s_par)]
    assert rows[0]["e2e_error_pct"] == pytest.approx(5.0)
    assert rows[0]["stages"]["load"]["error_pct"] == pytest.approx(10.0)
    assert rows[1]["peak_error_pct"] == pytest.approx(-10.0)
    reds = reductions(rows, {"a-reload": "g", "a-par": "g"})
    assert len(reds) == 1
    assert reds[0]["measured_reduction_pct"] == pytest.approx(25.0)
    assert reds[0]["simulated_reduction_pct"] == pytest.approx(100 * 12 / 42)
    s = summarize_errors(rows, reds)
    assert s["e2e_abs_error_pct"]["max"] == pytest.approx(5.0)
    assert s["worst_peak"] == "a-par"
    md = fidelity_markdown({"date": "d", "machine": {}, "profile": "p", "profile_source": "measured",
                            "scenarios": rows, "reductions": reds, "summary": s})
    assert "a-par" in md and "+5.0%" in md


def test_reduction_needs_a_reload_twin():
    rows = [compare_runs("x", summary("reuse-serial", 3.0, 1), summary("reuse-serial", 3.0, 1))]
    assert reductions(rows, {"x": "g"}) == []


def test_median_run_picks_the_middle_run_and_the_median_peak():
    from atomsim.validate.suite import median_run
    runs = [("t1", {"e2e_s": 12.0, "peak_bytes": 300}), ("t2", {"e2e_s": 10.0, "peak_bytes": 100}),
            ("t3", {"e2e_s": 11.0, "peak_bytes": 500})]
    trace, summary = median_run(runs)
    assert trace == "t3" and summary["e2e_s"] == 11.0
    assert summary["peak_bytes"] == 300                       # median of the peaks, not t3's own
    assert [r["e2e_s"] for r in summary["repeats"]] == [12.0, 10.0, 11.0]
    assert median_run(runs[:2])[0] == "t2"                      # even count: the lower middle run
    assert median_run(runs[:1]) == runs[0]                      # one run: itself, unchanged


def test_reduction_with_rounds_is_the_median_of_paired_rounds():
    """Reload 10, 20, 10 s and reuse 8, 12, 9 s by round: per round 20%, 40%, 10% -> median 20%
    (between the median runs it would be 10 vs 9: 10%). Unequal round counts: between the median runs."""
    rows = [dict(compare_runs("r", summary("reload", 10.0, 1), summary("reload", 10.0, 1)),
                 measured_repeats=[{"e2e_s": x} for x in (10.0, 20.0, 10.0)]),
            dict(compare_runs("u", summary("reuse-serial", 9.0, 1), summary("reuse-serial", 8.0, 1)),
                 measured_repeats=[{"e2e_s": x} for x in (8.0, 12.0, 9.0)])]
    d = reductions(rows, {"r": "g", "u": "g"})[0]
    assert d["measured_reduction_per_round_pct"] == pytest.approx([20.0, 40.0, 10.0])
    assert d["measured_reduction_pct"] == pytest.approx(20.0) and d["error_pp"] == pytest.approx(0.0)
    rows[1]["measured_repeats"] = rows[1]["measured_repeats"][:2]
    assert reductions(rows, {"r": "g", "u": "g"})[0]["measured_reduction_pct"] == pytest.approx(10.0)
