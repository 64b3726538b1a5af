"""The energy model says where each figure comes from and offers a per-busy-core rule beside F.7's
(issue 28, item 6). Analytic cases, and summaries through `main([...])`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from atomsim.cli import main
from atomsim.schema.energy import F7, add_energy, core_busy_s, energy_parts
from atomsim.schema.scenario import load_devices
from atomsim.schema.trace import Span, Trace

ROOT = Path(__file__).resolve().parents[1]
PHONE_POWER_MODEL = {"cpu_w": 2.0, "dram_w": 0.2, "rule": "union", "source": "paper appendix F.7"}


def two_lanes():
    """Encoder 0-4 s (1 thread) beside decoder 2-6 s (2 threads): F.7 counts 0-6 once."""
    tr = Trace(source="simulated", task="assembly", policy="reuse-parallel", lanes=("main", "encoder", "decoder"))
    tr.spans += [Span("encode:0", "encode", "encoder", 0.0, 4.0), Span("caption:0", "caption", "decoder", 2.0, 6.0)]
    return tr, {"encode:0": 1, "caption:0": 2}


def test_per_core_rule_charges_each_busy_core():
    tr, threads = two_lanes()
    # busy cores: 1 (0-2 s), 1+2 capped at 2 cores (2-4 s), 2 (4-6 s) -> 2 + 4 + 4 = 10 core-seconds
    assert core_busy_s(tr, cores=2, threads=threads) == pytest.approx(10.0)
    assert core_busy_s(tr, cores=8, threads=threads) == pytest.approx(2 + 6 + 4)
    dev = {"cpu_w": 4.0, "dram_w": 0.5, "cores": 2, "energy_rule": "per-core"}
    parts = energy_parts(tr, dev, threads=threads)
    assert parts["energy_cpu_j"] == pytest.approx(2.0 * 10.0)        # core_w = cpu_w / cores = 2 W
    assert parts["cpu_busy_s"] == pytest.approx(6.0)                 # the union's, for comparison
    union = energy_parts(tr, {**dev, "energy_rule": "union"})
    assert union["energy_cpu_j"] == pytest.approx(4.0 * 6.0)         # F.7: the overlap is free
    pm = add_energy({"e2e_s": 6.0}, tr, dev, threads=threads)["power_model"]
    assert pm["rule"] == "per-core" and pm["core_w"] == pytest.approx(2.0) and "cpu_w / cores" in pm["core_w_source"]


def test_every_device_says_where_its_power_comes_from():
    cat = load_devices()
    for phone in ("pixel_5a", "pixel_8a", "galaxy_s23"):
        assert cat[phone].power_source == F7 and cat[phone].energy_rule == "union"
    assert "F.7" not in cat["host"].power_source.replace("not the paper's F.7", "")
    assert cat["host"].power_source.startswith("assumed")
    from atomsim.schema.energy import power_model
    from atomsim.schema.scenario import resolve_device
    changed = resolve_device({"base": "pixel_5a", "cpu_w": 3.0}, "test")   # other figures: not F.7's any more
    assert power_model(changed)["source"].startswith("not given")


def test_phone_summaries_keep_f7_and_the_host_states_its_assumption(tmp_path, capsys):
    assert main(["simulate", str(ROOT / "scenarios" / "paper" / "assembly-pixel_5a.yaml"), "--policy", "reload",
                 "--no-png", "--out", str(tmp_path / "phone")]) == 0
    phone = json.loads((tmp_path / "phone" / "reload" / "summary.json").read_text())
    assert phone["power_model"] == PHONE_POWER_MODEL            # the demo's arithmetic, unchanged
    assert "CPU 2 W while any lane is busy" in capsys.readouterr().out
    host = tmp_path / "host.yaml"
    host.write_text((ROOT / "scenarios" / "validation" / "v05-assembly-fp32-parallel.yaml").read_text()
                    .replace("../../profiles/", str(ROOT / "profiles") + "/"))
    assert main(["simulate", str(host), "--policy", "reuse-parallel", "--no-png", "--out", str(tmp_path / "h")]) == 0
    pm = json.loads((tmp_path / "h" / "reuse-parallel" / "summary.json").read_text())["power_model"]
    assert pm["source"].startswith("assumed") and pm["rule"] == "union"
    assert "figures: assumed" in capsys.readouterr().out


def test_simulate_energy_rule_per_core_is_named_in_the_summary(tmp_path, capsys):
    args = ["simulate", str(ROOT / "scenarios" / "paper" / "assembly-pixel_5a.yaml"), "--policy", "reuse-parallel",
            "--no-png"]
    assert main(args + ["--out", str(tmp_path / "u")]) == 0
    assert main(args + ["--out", str(tmp_path / "c"), "--energy-rule", "per-core"]) == 0
    u, c = (json.loads((tmp_path / d / "reuse-parallel" / "summary.json").read_text()) for d in "uc")
    assert c["power_model"]["rule"] == "per-core" and c["power_model"]["source"] == F7
    assert c["energy_cpu_j"] == pytest.approx(c["power_model"]["core_w"] * c["core_busy_s"])
    assert c["e2e_s"] == u["e2e_s"] and c["cpu_busy_s"] == pytest.approx(u["cpu_busy_s"])
    assert "energy (J, per-core)" in capsys.readouterr().out
