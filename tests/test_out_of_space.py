"""Issue 26, item 2: a full disk (ENOSPC) or an exceeded quota (EDQUOT) while writing an output is
one line naming the path, exit 2, and leaves no temporary or half-written file behind (an earlier
result stays as it was). The error is injected into the write path, and, where root can mount one,
a real tiny tmpfs fills up."""
from __future__ import annotations

import builtins
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import test_report_fakes as fakes
from atomsim.cli import main
from atomsim.errors import EXIT_ERROR, EXIT_OK, OutputError

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "paper" / "assembly-pixel_5a.yaml"
REAL_OPEN = builtins.open
WORDS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


class FullDisk:
    """A file whose writes put half of the data on disk, then fail as a full disk does."""

    def __init__(self, f, code):
        self.f, self.code = f, code

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        raise OSError(self.code, os.strerror(self.code))

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def full_disk_for(monkeypatch, match, code=errno.ENOSPC):
    """Make writes to files whose name `match(name)` accepts fail with `code`."""
    def fake_open(file, mode="r", *a, **k):
        f = REAL_OPEN(file, mode, *a, **k)
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax") and match(Path(file).name):
            return FullDisk(f, code)
        return f
    monkeypatch.setattr(builtins, "open", fake_open)


def leftovers(d: Path) -> list[str]:
    """Temporaries of an atomic write or directory anywhere under `d`."""
    return sorted(str(p.relative_to(d)) for p in d.rglob("*")
                  if p.name.startswith(".") or p.name.endswith(".tmp") or ".atomsim-" in p.name)


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def simulate(out, *extra):
    return main(["simulate", str(SCENARIO), "--policy", "reload", "--out", str(out), *extra])


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
@pytest.mark.parametrize("name", ["summary.json", "trace.json", "timeline.png"])
def test_simulate_on_a_full_disk(tmp_path, capsys, monkeypatch, name, code):
    out = tmp_path / "out"
    assert simulate(out) == EXIT_OK            # an earlier result, to be kept as it was
    before = {f.name: f.read_bytes() for f in (out / "reload").iterdir()}
    capsys.readouterr()
    full_disk_for(monkeypatch, lambda n: n.startswith(f".{name}."), code)
    assert simulate(out, "--clips", "7") == EXIT_ERROR
    assert one_line(capsys) == f"atomsim: error: {WORDS[code]} while writing {out / 'reload' / name}"
    assert leftovers(out) == []
    assert {f.name: f.read_bytes() for f in (out / "reload").iterdir()} == before


def test_simulate_into_a_new_directory_on_a_full_disk(tmp_path, capsys, monkeypatch):
    out = tmp_path / "new"
    full_disk_for(monkeypatch, lambda n: n.startswith(".summary.json."))
    assert simulate(out, "--no-png") == EXIT_ERROR
    assert one_line(capsys) == f"atomsim: error: no space left on device while writing {out / 'reload' / 'summary.json'}"
    assert leftovers(out) == [] and not (out / "reload").exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_atomic_writes_name_the_path(tmp_path, monkeypatch, code):
    from atomsim.io import atomic_write_json, atomic_write_text
    full_disk_for(monkeypatch, lambda n: True, code)
    for write, target in ((atomic_write_json, tmp_path / "a.json"), (atomic_write_text, tmp_path / "b.md")):
        with pytest.raises(OutputError) as e:
            write(target, {"x": 1} if write is atomic_write_json else "text")
        assert str(e.value) == f"{WORDS[code]} while writing {target}"
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def study(tmp_path):
    fakes.write_profile(tmp_path / "prof.json")
    p = tmp_path / "study.yaml"
    p.write_text("name: small\nbase: {device: pixel_5a, workload: {task: assembly, clips: 2}, "
                 "models: {preset: paper, quant: torchao-int8}}\ngrid:\n  workload.clips: [1, 3]\n"
                 "  policy: [reload, reuse-parallel]\nprofile: prof.json\n")
    return p


@pytest.mark.parametrize("name", ["points.partial.jsonl", "points.csv"])
def test_sweep_on_a_full_disk(tmp_path, capsys, monkeypatch, study, name):
    out = tmp_path / "sweep"
    full_disk_for(monkeypatch, lambda n: n == name or n.startswith(f".{name}."))
    assert main(["sweep", str(study), "--out", str(out), "--workers", "1", "--no-progress"]) == EXIT_ERROR
    assert one_line(capsys) == f"atomsim: error: no space left on device while writing {out / name}"
    assert leftovers(out) == []
    monkeypatch.undo()   # space again: the rerun finishes (resuming from the partial file where it was kept)
    assert main(["sweep", str(study), "--out", str(out), "--workers", "1", "--no-progress"]) == EXIT_OK
    assert (out / "points.csv").exists() and not (out / "points.partial.jsonl").exists()


def test_event_log_on_a_full_disk(tmp_path, monkeypatch):
    from atomsim.run.events import EventLog
    full_disk_for(monkeypatch, lambda n: n == ".events.jsonl")
    log = EventLog(tmp_path / ".events.jsonl")
    with pytest.raises(OutputError, match=f"no space left on device while writing {tmp_path / '.events.jsonl'}"):
        log.write(kind="start", step="encode:0", t_s=0.0)
    log.close()


# ---- a real filesystem that fills up
@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 64 KiB tmpfs mounted on tmp_path/full (root only); unmounted afterwards, whatever happens."""
    d = tmp_path / "full"
    d.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def test_simulate_into_a_tiny_tmpfs(tiny_tmpfs):
    out = tiny_tmpfs / "out"
    r = subprocess.run([sys.executable, "-m", "atomsim", "simulate", str(SCENARIO), "--policy", "reload",
                        "--clips", "40", "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == EXIT_ERROR, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("atomsim: error: no space left on device while writing "
                                               f"{out / 'reload'}/"), r.stderr
    assert leftovers(tiny_tmpfs) == [] and not (out / "reload").exists()
