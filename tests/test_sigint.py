"""Issue 14: Ctrl-C (SIGINT to the process group, once, and twice 0.2 s apart) during `profile`,
`run`, `simulate`, `sweep` and `validate`, as the `atomsim` command in its own session.

Each case asserts: exit 130, no traceback, no process of the command left, no temporary file left,
earlier outputs intact; for `profile` and `sweep`, a rerun resumes. Inputs are tiny (tiny preset,
a 2 s video, a synthetic profile) so that each case takes seconds."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
import yaml

from atomsim.errors import EXIT_INTERRUPTED

import test_report_fakes as fakes

ROOT = Path(__file__).resolve().parent.parent
ATOMSIM = Path(sys.executable).parent / "atomsim"   # the command of the environment running the tests
PAPER = ROOT / "scenarios" / "paper" / "assembly-pixel_5a.yaml"
TINY = ROOT / "scenarios" / "examples" / "assembly-tiny.yaml"
TIMES = (1, 2)


class Command:
    """`atomsim ARGS` in a new session (its own process group), stderr to a file, marked by an
    environment variable so that every process it starts can be found afterwards."""

    def __init__(self, args, tmp: Path, env=None):
        self.mark = uuid.uuid4().hex
        self.err_path = tmp / f"stderr-{self.mark}.txt"
        self.err = open(self.err_path, "w")
        # ATOMSIM_PROGRESS=1: the progress bars, which mark the moment to interrupt, in the stderr file too
        env = dict(os.environ, ATOMSIM_TEST_MARK=self.mark, ATOMSIM_PROGRESS="1", **(env or {}))
        self.proc = subprocess.Popen([str(ATOMSIM), *map(str, args)], start_new_session=True, env=env,
                                     stdout=subprocess.DEVNULL, stderr=self.err)

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_until(self, ready, timeout=90.0) -> None:
        t0 = time.monotonic()
        while not ready(self):
            assert self.proc.poll() is None, f"ended before it was interrupted: {self.stderr()}"
            assert time.monotonic() - t0 < timeout, f"not ready after {timeout} s: {self.stderr()}"
            time.sleep(0.05)

    def interrupt(self, times: int, timeout=60.0) -> int:
        for i in range(times):
            if i:
                time.sleep(0.2)
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"still running {timeout} s after {times} SIGINT: {self.stderr()}")
        self.err.close()
        return rc

    def left(self) -> list[int]:
        """Processes of this command still alive (a second after it ended)."""
        time.sleep(1.0)
        found = []
        for p in psutil.process_iter():
            try:
                if p.environ().get("ATOMSIM_TEST_MARK") == self.mark:
                    found.append(p.pid)
            except (psutil.Error, OSError):
                continue
        return found

    def kill(self) -> None:
        for pid in self.left():
            os.kill(pid, signal.SIGKILL)

    def has_children(self) -> bool:
        try:
            return bool(psutil.Process(self.proc.pid).children(recursive=True))
        except psutil.Error:
            return False


def snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def temporaries(d: Path) -> list[str]:
    """Hidden files atomsim writes while working (atomic writes, output sets, assembly)."""
    return [str(p) for p in d.rglob(".*")]


def check_interrupted(cmd: Command, rc: int, out: Path, earlier: dict) -> None:
    err = cmd.stderr()
    left = cmd.left()
    if left:
        cmd.kill()
    assert rc == EXIT_INTERRUPTED, (rc, err)
    assert "Traceback" not in err, err
    assert "atomsim: interrupted" in err
    assert not left, f"processes left: {left}"
    assert not temporaries(out), temporaries(out)
    now = snapshot(out)
    assert {k: now.get(k) for k in earlier} == earlier, "earlier outputs changed"


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from atomsim.run.synthetic import make_video
    return make_video(tmp_path_factory.mktemp("video") / "v.mp4", seconds=2.0)


@pytest.mark.parametrize("times", TIMES)
def test_simulate(tmp_path, times):
    out = tmp_path / "out"
    base = ["simulate", PAPER, "--policy", "reuse-parallel", "--no-png", "--out", out]
    assert subprocess.run([str(ATOMSIM), *map(str, base)], capture_output=True).returncode == 0
    earlier = snapshot(out)
    cmd = Command(base + ["--clips", "20000"], tmp_path)
    cmd.wait_until(lambda c: "simulating" in c.stderr())
    check_interrupted(cmd, cmd.interrupt(times), out, earlier)
    assert snapshot(out) == earlier


def long_study(tmp_path: Path) -> Path:
    p = tmp_path / "long.yaml"
    p.write_text(yaml.safe_dump({"name": "long", "base": str(PAPER),
                                 "grid": {"workload.clips": list(range(20, 60)),
                                          "policy": ["reload", "reuse-serial", "reuse-parallel"]}}))
    return p


@pytest.mark.parametrize("times", TIMES)
def test_sweep(tmp_path, times):
    out = tmp_path / "out"
    (tmp_path / "short.yaml").write_text(f"base: {PAPER}\ngrid: {{workload.clips: [1, 2]}}\n")
    earlier_run = subprocess.run([str(ATOMSIM), "sweep", str(tmp_path / "short.yaml"), "--out", str(out),
                                  "--workers", "1", "--no-progress"], capture_output=True, text=True)
    assert earlier_run.returncode == 0, earlier_run.stderr
    earlier = snapshot(out)
    study = long_study(tmp_path)
    args = ["sweep", study, "--out", out, "--workers", "2", "--no-progress", "--chunk-size", "2"]
    cmd = Command(args, tmp_path)
    partial = out / "points.partial.jsonl"
    cmd.wait_until(lambda c: partial.exists() and len(partial.read_text().splitlines()) >= 4)
    check_interrupted(cmd, cmd.interrupt(times), out, earlier)
    kept = len(partial.read_text().splitlines()) - 1
    rerun = subprocess.run([str(ATOMSIM), *map(str, args)], capture_output=True, text=True, timeout=300)
    assert rerun.returncode in (0, 3), rerun.stderr
    assert f"120 points ({kept} resumed" in rerun.stdout and kept > 0


def tiny_profile(tmp_path: Path) -> Path:
    return fakes.write_profile(tmp_path / "tiny-profile.json", quants=("fp32",), preset="tiny", device="host",
                               source="measured")


@pytest.mark.parametrize("times", TIMES)
def test_run(tmp_path, times, video, tiny_store):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("an earlier file\n")
    earlier = snapshot(out)
    cmd = Command(["run", TINY, "--videos", video, "--out", out, "--store", tiny_store], tmp_path)
    cmd.wait_until(lambda c: "step/s" in c.stderr() or "load:" in c.stderr())
    check_interrupted(cmd, cmd.interrupt(times), out, earlier)


@pytest.mark.parametrize("times", TIMES)
def test_validate(tmp_path, times, video, tiny_store):
    out = tmp_path / "out"
    out.mkdir()
    (out / "fidelity.json").write_text(json.dumps({"earlier": True}))
    earlier = snapshot(out)
    cmd = Command(["validate", TINY, "--profile", tiny_profile(tmp_path), "--videos", video, "--out", out,
                   "--store", tiny_store], tmp_path)
    cmd.wait_until(Command.has_children)   # the real run, in its own process
    time.sleep(1.0)
    check_interrupted(cmd, cmd.interrupt(times), out, earlier)


PROFILE_ARGS = ["profile", "--preset", "tiny", "--quick", "--model", "sentence-encoder", "--no-corun",
                "--threads", "1", "--samples", "1", "--storage-mb", "1"]


@pytest.mark.parametrize("times", TIMES)
def test_profile(tmp_path, times, tiny_store):
    out = tmp_path / "out"
    out.mkdir()
    target = out / "p.json"
    (out / "older.json").write_text(json.dumps({"earlier": True}))
    earlier = snapshot(out)
    args = [*PROFILE_ARGS, "--store", tiny_store, "--out", target]
    cmd = Command(args, tmp_path)
    side = out / "p.json.partial.json"
    cmd.wait_until((lambda c: side.exists()) if times == 1 else Command.has_children, timeout=120)
    check_interrupted(cmd, cmd.interrupt(times), out, earlier)
    assert not target.exists()
    if times == 1:   # the side file holds what was measured: a rerun resumes from it and finishes
        rerun = subprocess.run([str(ATOMSIM), *map(str, args)], capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        assert "resuming from" in rerun.stderr and target.exists() and not side.exists()
