"""Runs under a RAM limit (a memory cgroup), streamed clips and multi-request workloads, for real.

The limited runs need a memory cgroup this process may create (root with cgroup v1, or a
delegated cgroup v2 with the memory controller): skipped with that reason elsewhere.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import videos as tv  # noqa: E402

from atomsim.cli import main  # noqa: E402
from atomsim.errors import EXIT_OOM  # noqa: E402
from atomsim.run.limit import CgroupError, MemoryCgroup, parse_size  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "scenarios" / "examples"


def cgroup_or_skip():
    try:
        parent, _ = MemoryCgroup.find_parent()
    except CgroupError as e:
        pytest.skip(f"no writable memory cgroup here: {e}")
    return parent


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return tv.make_video(tmp_path_factory.mktemp("v") / "v.mp4", seconds=15.0, width=96, height=64, fps=6)   # 2 clips


def ours(parent: Path, pid: int) -> list[Path]:
    return sorted(parent.glob(f"atomsim-{pid}-*"))


# ---------------------------------------------------------------- the option, bad input first

@pytest.mark.parametrize("text,bytes_", [("1.5GB", 1_500_000_000), ("1500MB", 1_500_000_000),
                                         ("1GiB", 2**30), ("123456789", 123456789), ("device", 6_000_000_000)])
def test_parse_size(text, bytes_):
    assert parse_size(text, device_ram=6_000_000_000) == bytes_


@pytest.mark.parametrize("bad", ["lots", "0", "-1GB", "0MB", "1.5XB", ""])
def test_bad_ram_limit_names_the_option_before_any_work(bad, tmp_path, capsys):
    rc = main(["run", str(TINY / "assembly-tiny.yaml"), "--videos", str(tmp_path / "missing.mp4"),
               "--out", str(tmp_path / "out"), f"--ram-limit={bad}"])
    err = capsys.readouterr().err
    assert rc == 2 and "--ram-limit" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_ram_limit_below_the_runtime_baseline(tmp_path, capsys):
    prof = ROOT / "profiles" / "host-small-validation.json"
    sc = tmp_path / "sc.yaml"
    sc.write_text((TINY / "assembly-tiny.yaml").read_text() + f"profile: {prof}\n")
    rc = main(["run", str(sc), "--videos", "x.mp4", "--out", str(tmp_path / "o"), "--ram-limit", "200MB"])
    err = capsys.readouterr().err
    assert rc == 2 and "below the runtime baseline" in err and "--ram-limit 200 MB" in err


def test_no_cgroup_is_a_clear_error(tmp_path, monkeypatch):
    import atomsim.run.limit as lim
    monkeypatch.setattr(lim, "CGROUP_ROOT", tmp_path)   # no memory controller there
    with pytest.raises(CgroupError, match="needs a memory cgroup"):
        MemoryCgroup.find_parent()


# ---------------------------------------------------------------- real runs under a limit

def run_limited(video, out, limit, policy="reload", task="assembly"):
    return main(["run", str(TINY / f"{task}-tiny.yaml"), "--videos", str(video), "--out", str(out),
                 "--policy", policy, "--ram-limit", limit, "--no-progress"])


@pytest.mark.slow
def test_tight_limit_is_oom_killed_with_a_summary_and_trace(video, tiny_store, tmp_path, monkeypatch):
    parent = cgroup_or_skip()
    monkeypatch.setenv("ATOMSIM_STORE", str(tiny_store))
    out = tmp_path / "killed"
    # the runtime alone charges ~300 MB, the decoder process (run/decoder.py) ~25 MB more; the run needs ~415 MB
    rc = run_limited(video, out, "360MB")
    assert rc == EXIT_OOM
    s = json.loads((out / "summary.json").read_text())
    assert s["outcome"] == "oom-killed" and s["oom"] and s["oom_kills"] >= 1 and s["exit_status"] == -signal.SIGKILL
    assert s["cgroup_peak_bytes"] <= 360_000_000 and s["ram_limit_bytes"] == 360_000_000
    assert s["killed_steps"] and s["killed_at_s"] > 0
    trace = json.loads((out / "trace.json").read_text())
    done = [e["name"] for e in trace["traceEvents"] if e["ph"] == "X"]
    assert done and s["killed_steps"][0] not in done          # the trace holds the steps before the kill
    assert not ours(parent, os.getpid()) and not (out / ".events.jsonl").exists()


@pytest.mark.slow
def test_generous_limit_completes_with_cgroup_figures(video, tiny_store, tmp_path, monkeypatch):
    parent = cgroup_or_skip()
    # a store of its own: a test beside it (another pytest-xdist worker) reading the shared store's
    # files would make them resident again between the run's eviction and its loads
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    monkeypatch.setenv("ATOMSIM_STORE", str(store))
    out = tmp_path / "ok"
    assert run_limited(video, out, "3GB") == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["outcome"] == "completed" and s["oom_kills"] == 0 and s["exit_status"] == 0
    assert 0 < s["cgroup_peak_bytes"] < 3e9
    assert [ld["step"] for ld in s["loads"]] == ["load:video-encoder", "load:caption-decoder",
                                                 "load:sentence-encoder", "load:script-lm"]
    # evicted before the run: every first load is cold, its thread read the file from storage
    assert all(ld["cold"] and ld["read_bytes"] >= 0.5 * ld["file_bytes"] for ld in s["loads"])
    assert not ours(parent, os.getpid())


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGINT to the group", "SIGTERM to atomsim"])
def test_sigint_mid_run_leaves_no_cgroup_and_no_process(video, tiny_store, tmp_path, sig):
    parent = cgroup_or_skip()
    env = {**os.environ, "ATOMSIM_STORE": str(tiny_store)}
    cmd = [sys.executable, "-m", "atomsim", "run", str(TINY / "assembly-tiny.yaml"), "--videos", str(video),
           "--out", str(tmp_path / "o"), "--ram-limit", "3GB", "--no-progress"]
    p = subprocess.Popen(cmd, env=env, start_new_session=True, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ours(parent, p.pid) and time.time() < deadline:
        time.sleep(0.2)
    cg = ours(parent, p.pid)
    assert cg, "no cgroup appeared"
    time.sleep(4)                                   # the child is importing or running
    if sig.startswith("SIGINT"):
        os.killpg(p.pid, signal.SIGINT)
    else:
        os.kill(p.pid, signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err[-2000:]
    assert not cg[0].exists() and not ours(parent, p.pid)
    left = group_members(p.pid, wait_s=10.0)          # a process that is still exiting gets a moment
    assert not left, f"left running in the group: {left}"


def group_members(pgid: int, wait_s: float) -> list[str]:
    """The processes of group `pgid` other than zombies (state, command line), after waiting up
    to `wait_s` for the group to empty."""
    deadline = time.time() + wait_s
    while True:
        left = []
        for d in Path("/proc").iterdir():
            try:
                stat = (d / "stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    cmd = (d / "cmdline").read_bytes().replace(bytes(1), b" ").decode(errors="replace")
                    left.append(f"{d.name} {fields[0]} {cmd[:200]}")
            except (OSError, ValueError, IndexError):
                continue
        if not left or time.time() > deadline:
            return left
        time.sleep(0.2)


# ---------------------------------------------------------------- streaming and requests, measured

def test_scan_then_decode_gives_the_frames_of_one_pass(tmp_path):
    import torch

    from atomsim.run.video import decode_clip, read_clips
    for name, path in tv.video_set(tmp_path).items():
        full = read_clips(path, 10, 5, 6, 32)
        scan = read_clips(path, 10, 5, 6, 32, keep_frames=False)
        assert all(c.frames is None for c in scan.clips), name
        for a, b in zip(full.clips, scan.clips):
            assert torch.equal(decode_clip(b, 6, 32), a.frames), f"{name} clip {a.index}"


@pytest.mark.slow
def test_runner_streams_frames_within_queue_size(tiny_store, tmp_path):
    from atomsim.run import run_scenario
    from atomsim.schema.scenario import load_scenario
    long = tv.make_video(tmp_path / "long.mp4", seconds=40.0, width=96, height=64, fps=6)   # 7 clips
    sc = load_scenario(TINY / "retrieval-tiny.yaml").with_changes(**{"workload.queue_size": 2})
    r = run_scenario(sc, [long], policy="reuse-serial", out_dir=tmp_path / "o", store=tiny_store, progress=False)
    clip_bytes = 6 * 3 * 224 * 224 * 4
    inputs = [b["inputs"] for _, b in r.trace.memory]
    assert r.summary["clips"] == 7
    assert max(inputs) <= 2 * clip_bytes + 1_000_000     # frames of 2 clips (+ features) at most
    assert max(inputs) >= clip_bytes                     # and frames were there
    decodes = [s for s in r.trace.spans if s.op == "decode"]
    assert len(decodes) == 7 and all(s.lane == "video" for s in decodes)


@pytest.mark.slow
@pytest.mark.parametrize("policy,loads_per_module", [("reload", 3), ("reuse-parallel", 1)])
def test_three_requests_load_per_request_or_once(tiny_store, tmp_path, policy, loads_per_module):
    from atomsim.run import run_scenario
    from atomsim.schema.scenario import load_scenario
    from atomsim.sim import simulate
    short = tv.make_video(tmp_path / "s.mp4", seconds=4.0, width=96, height=64, fps=6)   # 1 clip
    sc = load_scenario(TINY / "retrieval-tiny.yaml").with_changes(**{
        "workload.requests": [["a dog"], ["a red car", "the sea"], ["night"]], "workload.think_s": 0.2})
    r = run_scenario(sc, [short], policy=policy, out_dir=tmp_path / policy, store=tiny_store, progress=False)
    measured = [ld["module"] for ld in r.summary["loads"]]
    assert all(measured.count(m) == loads_per_module for m in set(measured))
    assert [q["query"] for q in r.results["requests"][1]["outputs"]["ranking"]] == ["a red car", "the sea"]
    waits = [s for s in r.trace.spans if s.kind == "wait"]
    assert len(waits) == 2 and all(s.dur_s >= 0.2 for s in waits)
    # the simulator executes the same plan: the same loads
    from atomsim.schema.profile import load_profile   # any profile with these modules: loads do not depend on it
    sim = simulate(sc.with_changes(**{"workload.clips": 1}), load_profile(ROOT / "profiles" / "host-small-validation.json"),
                   policy=policy)
    assert sorted(ld["module"] for ld in sim.loads) == sorted(measured)


def test_cgroup_v2_files_in_a_fake_hierarchy(tmp_path, monkeypatch):
    """This machine's memory controller is on cgroup v1, so v2 is checked on a directory laid out
    as a v2 root with the memory controller enabled for children: memory.max and memory.swap.max written,
    the peak from memory.peak and OOM kills from memory.events."""
    import atomsim.run.limit as limit
    (tmp_path / "cgroup.controllers").write_text("cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("memory pids\n")   # enabled for children
    monkeypatch.setattr(limit, "CGROUP_ROOT", tmp_path)
    real_mkdir = Path.mkdir

    def mkdir_like_cgroupfs(self, *a, **k):   # the kernel makes a new cgroup's files
        real_mkdir(self, *a, **k)
        (self / "memory.swap.max").write_text("max\n")
    monkeypatch.setattr(Path, "mkdir", mkdir_like_cgroupfs)
    cg = MemoryCgroup.create(300 * 10**6, name="t")
    assert cg.version == 2 and cg.path == tmp_path / "t"
    assert (cg.path / "memory.max").read_text().strip() == str(300 * 10**6)
    assert (cg.path / "memory.swap.max").read_text().strip() == "0"
    assert cg.peak_bytes() is None and cg.oom_kills() == 0
    (cg.path / "memory.peak").write_text("123456\n")
    (cg.path / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n")
    assert cg.peak_bytes() == 123456 and cg.oom_kills() == 1
