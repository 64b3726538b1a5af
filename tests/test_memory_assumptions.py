"""The memory report says what it assumes (issue 28, item 3): a runtime baseline charged to every
combination (the profile's, else the catalog's default for the device), "fits" against the app's
budget (the device's RAM less what the OS keeps, two catalog fields), every row naming its profile."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).parent))
import test_report_fakes as fakes  # noqa: E402

from atomsim.cli import main  # noqa: E402
from atomsim.report.memory_report import memory_rows, to_markdown  # noqa: E402
from atomsim.schema.scenario import load_devices  # noqa: E402

GB = 10 ** 9
ROOT = Path(__file__).resolve().parents[1]


def test_the_catalog_keeps_ram_and_the_os_reserve_apart_and_says_why():
    cat = load_devices()
    for name in ("pixel_5a", "pixel_8a", "galaxy_s23", "host"):
        d = cat[name]
        assert 0 < d.os_reserved_bytes < d.ram_bytes and d.app_budget_bytes() == d.ram_bytes - d.os_reserved_bytes
        assert d.runtime_baseline_bytes and d.memory_source
    assert cat["pixel_5a"].app_budget_bytes() == int(5.5 * GB)   # as the committed out-of-memory scenario takes it


def peak_simulate(weights):
    """A simulator whose peak is `weights` plus the profile's runtime baseline (as the real one charges it)."""
    def simulate(scenario, profile, policy=None, clips=None):
        b = {"weights": weights, "inputs": 0, "activations": 0, "load_temporaries": 0,
             "baseline": int(profile.baseline_rss_bytes or 0)}
        return SimpleNamespace(summary={"e2e_s": 1.0, "peak_bytes": sum(b.values()), "breakdown_bytes": b})
    return simulate


def test_a_published_profile_is_charged_the_devices_default_baseline_and_fits_only_the_budget(tmp_path):
    pub = tmp_path / "paper-pixel_5a.json"
    pub.write_text(json.dumps({**fakes.profile_dict(device="pixel_5a"), "baseline_rss_bytes": 0}))   # as Table 8
    rows = memory_rows(["pixel_5a"], ["paper"], ["torchao-int8"], ["reuse-parallel"], profiles_dir=tmp_path,
                       simulate=peak_simulate(int(5.4 * GB)))
    r = rows[0]
    default = load_devices()["pixel_5a"].runtime_baseline_bytes
    assert r["breakdown"]["baseline"] == default and r["baseline_source"] == "catalog default for pixel_5a"
    assert r["peak_bytes"] == int(5.4 * GB) + default        # 5.7 GB: under the 6 GB of RAM ...
    assert r["budget_bytes"] == int(5.5 * GB) and r["fits"] is False   # ... over the app's budget
    assert r["headroom_bytes"] == int(5.5 * GB) - r["peak_bytes"]


def test_a_measured_baseline_is_kept(tmp_path):
    mine = fakes.write_profile(tmp_path / "mine.json", device="pixel_5a")   # baseline 0.3 GB, measured
    rows = memory_rows(["pixel_5a"], ["paper"], ["torchao-int8"], ["reload"], profile_files=[mine],
                       simulate=peak_simulate(GB))
    assert rows[0]["breakdown"]["baseline"] == int(0.3 * GB) and rows[0]["baseline_source"] == "measured (the profile's)"


def test_every_row_names_its_profile_and_the_report_its_assumptions(tmp_path, capsys):
    assert main(["report", "memory", "--devices", "pixel_5a", "pixel_8a", "--policies", "reload", "reuse-parallel",
                 "--out", str(tmp_path / "o")]) == 0
    md = (tmp_path / "o" / "memory.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| pixel_")]
    assert len(table) == 4
    for line in table:
        dev = line.split("|")[1].strip()
        assert f"paper-{dev}.json (the published figures of {dev})" in line
    assert "| app budget GB |" in md and "| OS keeps GB |" in md
    assert "## Assumptions" in md and "the OS keeps 0.50 GB, app budget 5.50 GB; default runtime baseline 300 MB" in md
    assert "runtime baseline: catalog default for pixel_5a" in md
    # the runtime baseline column is no longer 0.00 for the published profiles
    assert all(line.split("|")[11].strip() == "0.30" for line in table)


def test_rows_without_a_profile_render(tmp_path):
    rows = memory_rows(["galaxy_s23"], ["small"], ["fp32"], ["reload"], profiles_dir=tmp_path, simulate=fakes.simulate)
    md = to_markdown(rows)
    assert "## Not simulated" in md and "no small profile for galaxy_s23" in md
