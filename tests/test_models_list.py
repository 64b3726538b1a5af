"""Issue 26, item 3: `atomsim models list` shows every backend `models build` accepts, the ExecuTorch
programs included: an estimated size, "needs the executorch extra" where executorch cannot be
imported, and "(built)" for what the store holds."""
from __future__ import annotations

import json
import sys

from atomsim import models
from atomsim.cli import main

ALL = models.BACKENDS + models.EXECUTORCH_BACKENDS


def listing(tmp_path, capsys) -> str:
    assert main(["models", "list", "--preset", "tiny", "--store", str(tmp_path)]) == 0
    return capsys.readouterr().out


def test_every_backend_build_accepts_is_listed(tmp_path, capsys):
    out = listing(tmp_path, capsys)
    assert len(ALL) == 6
    for q in ALL:
        assert q in out, q
    assert out.rstrip().splitlines()[-1].startswith(f"store: {tmp_path}")
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if all(f"{q} MB" in line for q in models.EXECUTORCH_BACKENDS))
    for m in models.MODELS:   # each model has an estimate under each ExecuTorch backend
        row = next(line for line in lines[head:] if line.startswith("tiny ") and f" {m} " in line)
        assert row.count("~") == len(models.EXECUTORCH_BACKENDS), row
    assert max(len(line) for line in out.splitlines()) <= 160   # still readable in a terminal
    assert not any(tmp_path.iterdir())   # listing builds nothing


def test_without_executorch_says_it_needs_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "executorch", None)   # `import executorch` raises ImportError
    out = listing(tmp_path, capsys)
    # each program's cell, and the footer saying how to install it
    assert out.count("needs the executorch extra") == len(models.EXECUTORCH_BACKENDS) * len(models.MODELS) + 1
    for q in models.EXECUTORCH_BACKENDS:
        assert q in out


def test_a_built_program_is_marked(tmp_path, capsys):
    # a store entry as executorch_module.build leaves it (no export here: only the listing is tested)
    d = tmp_path / "tiny" / "video-encoder" / "executorch-xnnpack"
    d.mkdir(parents=True)
    (d / "model.pte").write_bytes(b"\0" * 123_456)
    (d / "atomsim.json").write_text(json.dumps({"files": {"model.pte": {"bytes": 123_456}}}))
    out = listing(tmp_path, capsys)
    assert "0.1 (built)" in out
