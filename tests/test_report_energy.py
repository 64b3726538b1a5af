
import pytest

from atomsim.schema.energy import add_energy, cpu_busy_s, energy_j
from atomsim.schema.scenario import load_devices
from atomsim.schema.trace import Span, Trace


def trace_of(*spans):
    tr = Trace(source="simulated", task="assembly", policy="reuse-parallel", lanes=("main", "encoder", "decoder"))
    for i, (s, e, kind) in enumerate(spans):
        tr.spans.append(Span(f"s{i}", "encode", "main", s, e, kind=kind))
    return tr


def test_union_rule_counts_overlap_once_and_skips_gaps_and_frees():
    tr = trace_of((0, 2, "run"), (1, 3, "run"), (5, 6, "load"), (6, 7, "free"))
    assert cpu_busy_s(tr) == pytest.approx(4.0)          # [0,3] + [5,6]
    assert cpu_busy_s(tr, "lanes") == pytest.approx(5.0)  # 2 + 2 + 1
    dev = {"cpu_w": 2.0, "dram_w": 0.2}
    assert energy_j(tr, dev) == pytest.approx(2.0 * 4 + 0.2 * 7)


def test_paper_f7_example_busy_throughout():
    # the paper: (2.0 W + 0.2 W) x 10 s = 22 J when the CPU is busy the whole run
    pixel = load_devices()["pixel_5a"]
    assert energy_j(trace_of((0, 10, "run")), pixel) == pytest.approx(22.0)
    assert energy_j({"e2e_s": 10.0}, pixel) == pytest.approx(22.0)


def test_add_energy_returns_new_summary_with_parts():
    summary = {"e2e_s": 7.0, "peak_bytes": 1}
    out = add_energy(summary, trace_of((0, 5, "run"), (6, 7, "run")), {"cpu_w": 2.0, "dram_w": 0.2})
    assert "energy_j" not in summary
    assert out["cpu_busy_s"] == pytest.approx(6.0)
    assert out["energy_j"] == pytest.approx(out["energy_cpu_j"] + out["energy_dram_j"]) == pytest.approx(13.4)
    assert out["power_model"]["rule"] == "union"
    assert add_energy(summary)["energy_j"] == pytest.approx(2.2 * 7)


def test_unknown_rule():
    with pytest.raises(ValueError, match="union"):
        cpu_busy_s(trace_of((0, 1, "run")), "cores")
