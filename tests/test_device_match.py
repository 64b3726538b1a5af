"""Profiles know their machine (issue 28, item 2): a profile of another device, or one measured under
emulation, is refused by `simulate`, `validate`, `sweep` and `report memory` in one line naming
both and `--allow-device-mismatch`; with the option each output says so. Through `main([...])`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import test_report_fakes as fakes  # noqa: E402

from atomsim.cli import main  # noqa: E402
from atomsim.schema.device_match import FLAG, device_mismatch, same_name  # noqa: E402
from atomsim.schema.profile import load_profile, profile_from_mapping  # noqa: E402
from atomsim.schema.scenario import load_devices, load_scenario  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAPER_5A = ROOT / "scenarios" / "paper" / "assembly-pixel_5a.yaml"
TINY = ROOT / "scenarios" / "examples" / "assembly-tiny.yaml"
EMULATED = ROOT / "profiles" / "aarch64-emulated-tiny.json"


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def host_measured(tmp_path, preset="paper", quant="torchao-int8") -> Path:
    """A profile `atomsim profile` would write on an x86 host (no device name, its fingerprint)."""
    d = fakes.profile_dict(quants=(quant,), preset=preset, source="measured")
    d["device"] = {"cpu_model": "Intel(R) Xeon(R) Processor", "arch": "x86_64", "cores": 2, "hostname": "vm",
                   "emulation": {"emulated": False, "evidence": []}}
    p = tmp_path / "host-measured.json"
    p.write_text(json.dumps(d))
    return p


# ---- the rule
def test_every_committed_scenario_matches_its_own_profile():
    """No committed scenario (paper, validation, search, user) is refused with the profile it names."""
    checked = 0
    for f in sorted((ROOT / "scenarios").rglob("*.yaml")):
        if f.name.endswith(".pipeline.yaml") or "studies" in f.parts or f.name == "devices.yaml":
            continue
        if "user" in f.parts and not (ROOT / "scenarios" / "user" / "ckpt").is_dir():
            continue   # their checkpoints are made by scenarios/user/make-checkpoints.sh (not in git)
        sc = load_scenario(f)
        if sc.profile and Path(sc.profile).exists():   # (a validation's profile may be measured by the run)
            assert device_mismatch(load_profile(sc.profile), sc.device) is None, f
            checked += 1
    assert checked >= 15


def test_what_counts_as_a_match():
    cat = load_devices()
    host_fp = {"cpu_model": "AMD EPYC", "arch": "x86_64"}
    measured = profile_from_mapping({**fakes.profile_dict(source="measured"), "device": host_fp}, "m")
    assert device_mismatch(measured, cat["host"]) is None
    assert "pixel_5a" in device_mismatch(measured, cat["pixel_5a"]) and "AMD EPYC" in device_mismatch(measured, cat["pixel_5a"])
    # measured on the phone itself (Termux): its ARM core types are the catalog SoC's
    phone = {"arch": "aarch64", "core_types": [{"name": "Cortex-A76", "cpus": [0, 1]}, {"name": "Cortex-A55", "cpus": [2]}]}
    on_phone = profile_from_mapping({**fakes.profile_dict(source="measured"), "device": phone}, "p")
    assert device_mismatch(on_phone, cat["pixel_5a"]) is None and device_mismatch(on_phone, cat["pixel_8a"])
    published = profile_from_mapping(fakes.profile_dict(device="pixel_8a"), "pub")
    assert device_mismatch(published, cat["pixel_8a"]) is None and device_mismatch(published, cat["pixel_5a"])
    emulated = load_profile(EMULATED)
    assert "emulation" in device_mismatch(emulated, cat["host"])
    assert device_mismatch(emulated, cat["host"], timing=False) is None   # its bytes may still serve
    assert same_name("Samsung Galaxy S23", "galaxy_s23") and not same_name("google Pixel 8 Android 14", "pixel_8a")


# ---- simulate
def test_simulate_refuses_a_host_profile_for_a_phone_and_marks_it_when_allowed(tmp_path, capsys):
    prof = host_measured(tmp_path)
    args = ["simulate", str(PAPER_5A), "--profile", str(prof), "--policy", "reuse-parallel", "--no-png"]
    assert main(args + ["--out", str(tmp_path / "o")]) == 2
    line = error_line(capsys)
    assert str(prof) in line and "pixel_5a" in line and "Intel(R) Xeon(R)" in line and FLAG in line
    assert not (tmp_path / "o").exists()
    assert main(args + ["--out", str(tmp_path / "o"), FLAG]) == 0
    out = capsys.readouterr().out
    assert f"WARNING ({FLAG})" in out and "Intel(R) Xeon(R)" in out
    for policy in ("reuse-parallel",):
        s = json.loads((tmp_path / "o" / policy / "summary.json").read_text())
        assert "pixel_5a" in s["device_mismatch"] and "Intel(R) Xeon(R)" in s["device_mismatch"]


def test_simulate_refuses_an_emulated_profile(tmp_path, capsys):
    args = ["simulate", str(TINY), "--profile", str(EMULATED), "--policy", "reload", "--no-png"]
    assert main(args + ["--out", str(tmp_path / "o")]) == 2
    line = error_line(capsys)
    assert "emulation" in line and "qemu-aarch64" in line and "device host" in line and FLAG in line
    assert main(args + ["--out", str(tmp_path / "o"), FLAG]) == 0
    assert "emulation" in json.loads((tmp_path / "o" / "reload" / "summary.json").read_text())["device_mismatch"]


def test_a_published_profile_says_what_it_is_above_the_table(tmp_path, capsys):
    assert main(["simulate", str(PAPER_5A), "--policy", "reload", "--no-png", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "the published figures of pixel_5a" in out[0]
    assert "device_mismatch" not in json.loads((tmp_path / "o" / "reload" / "summary.json").read_text())


# ---- validate (refused before any real run)
def test_validate_refuses_an_emulated_profile_before_any_run(tmp_path, capsys):
    rc = main(["validate", str(TINY), "--profile", str(EMULATED), "--videos", str(tmp_path / "v.mp4"),
               "--out", str(tmp_path / "o")])
    line = error_line(capsys)
    assert rc == 2 and str(EMULATED) in line and "device host" in line and "emulation" in line and FLAG in line
    assert not (tmp_path / "o" / "fidelity.json").exists()


def test_validate_refuses_a_phones_published_profile_for_the_host(tmp_path, capsys):
    tiny_5a = tmp_path / "paper-pixel_5a-tiny.json"
    tiny_5a.write_text(json.dumps(fakes.profile_dict(quants=("fp32",), preset="tiny", device="pixel_5a")))
    rc = main(["validate", str(TINY), "--profile", str(tiny_5a), "--videos", str(tmp_path / "v.mp4"),
               "--out", str(tmp_path / "o")])
    line = error_line(capsys)
    assert rc == 2 and "published figures of pixel_5a" in line and "device host" in line and FLAG in line


def test_validate_with_the_option_runs_and_marks_its_report(tmp_path, capsys, tiny_store):
    import videos as tv
    video = tv.make_video(tmp_path / "v.mp4", seconds=12.0, width=80, height=60, fps=5)
    sc = tmp_path / "s.yaml"
    sc.write_text(yaml.safe_dump({"name": "s", "device": "host", "policy": "reload",
                                  "workload": {"task": "assembly", "clips": 1, "top_k": 1},
                                  "models": {"preset": "tiny", "quant": "fp32"}, "threads": {"main": 1}}))
    rc = main(["validate", str(sc), "--profile", str(EMULATED), "--videos", str(video), "--store", str(tiny_store),
               "--out", str(tmp_path / "o"), "--no-progress", FLAG])
    out = capsys.readouterr().out
    assert rc == 0 and f"WARNING ({FLAG})" in out and "emulation" in out
    result = json.loads((tmp_path / "o" / "fidelity.json").read_text())
    assert len(result["device_mismatch"]) == 1 and "emulation" in result["device_mismatch"][0]
    assert "device mismatch allowed" in (tmp_path / "o" / "fidelity.md").read_text()


# ---- sweep (checked in the CLI layer, before any point runs)
def study(tmp_path, profile_device) -> Path:
    fakes.write_profile(tmp_path / "prof.json", device=profile_device)
    p = tmp_path / "study.yaml"
    p.write_text("name: s\nbase: {device: pixel_5a, workload: {task: assembly, clips: 2}, "
                 "models: {preset: paper, quant: torchao-int8}}\ngrid: {workload.clips: [1, 2], policy: [reload]}\n"
                 "profile: prof.json\n")
    return p


def test_sweep_refuses_a_profile_of_another_device(tmp_path, capsys):
    args = ["sweep", str(study(tmp_path, "pixel_8a")), "--workers", "1", "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "o")]) == 2
    line = error_line(capsys)
    assert "prof.json" in line and "published figures of pixel_8a" in line and "device pixel_5a" in line and FLAG in line
    assert not (tmp_path / "o" / "points.csv").exists()
    assert main(args + ["--out", str(tmp_path / "o"), FLAG]) == 0
    assert f"WARNING ({FLAG})" in capsys.readouterr().out


def test_sweep_of_matching_profiles_says_nothing(tmp_path, capsys):
    assert main(["sweep", str(study(tmp_path, "pixel_5a")), "--workers", "1", "--no-progress",
                 "--out", str(tmp_path / "o")]) == 0
    assert "WARNING" not in capsys.readouterr().out


# ---- report memory
def test_report_memory_refuses_a_host_profile_for_a_phone_and_marks_rows_when_allowed(tmp_path, capsys):
    prof = host_measured(tmp_path)
    args = ["report", "memory", "--devices", "pixel_5a", "--profile", str(prof), "--policies", "reload", "--clips", "2"]
    assert main(args + ["--out", str(tmp_path / "o")]) == 2
    line = error_line(capsys)
    assert str(prof) in line and "device pixel_5a" in line and FLAG in line
    assert main(args + ["--out", str(tmp_path / "o"), FLAG]) == 0
    assert f"WARNING ({FLAG})" in capsys.readouterr().out
    md = (tmp_path / "o" / "memory.md").read_text()
    assert "[another device's, allowed]" in md and f"WARNING ({FLAG})" in md


def test_fidelity_table_header_says_a_published_profile():
    from atomsim.validate.markdown import fidelity_table
    head = fidelity_table({"profile_source": "published", "scenarios": []}).splitlines()[0]
    assert "simulated e2e (s, published profile)" in head
    assert "published" not in fidelity_table({"profile_source": "measured", "scenarios": []})


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
