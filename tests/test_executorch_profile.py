"""`atomsim profile --quant executorch-xnnpack[-int8]` on the tiny preset (the programs of the
`et_store` fixture), a program the runtime cannot load, and the runner's weight figure of
program loads that overlap."""
from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest

pytest.importorskip("executorch")

from atomsim import models  # noqa: E402
from atomsim.cli import main  # noqa: E402
from atomsim.schema.profile import load_profile  # noqa: E402

pytestmark = pytest.mark.slow
QUANTS = ("executorch-xnnpack", "executorch-xnnpack-int8")


def test_profile_measures_every_module_through_its_program(et_store, tmp_path):
    out = tmp_path / "et.json"
    argv = ["profile", "--preset", "tiny", "--quant", QUANTS[0], "--quant", QUANTS[1], "--quick", "--no-corun",
            "--threads", "1", "--samples", "1", "--storage-mb", "8", "--store", str(et_store), "--out", str(out)]
    assert main(argv) == 0
    prof = load_profile(out)
    assert sorted(prof.modules) == sorted(f"{m}/{q}" for m in models.MODELS for q in QUANTS)
    for key, mod in prof.modules.items():
        files = models.weight_files("tiny", mod.model, mod.quant, store=et_store)
        assert mod.file_bytes == sum(f.stat().st_size for f in files), key
        assert mod.missing() == [] and mod.resident_bytes > 0, key
        assert mod.load.cold_s.median > 0 and mod.load.warm_s.median > 0, key
        assert sorted(mod.ops) == sorted(models.OPS[mod.model]), key
        for name, op in mod.ops.items():
            assert mod.missing(name) == [] and op.latency_s["1"].median > 0, (key, name)
            assert getattr(op, "planned_activation_bytes", 0) > 0, (key, name)   # beside the RSS figures


def test_a_program_the_runtime_cannot_load_fails_the_profile_naming_it(et_store, tmp_path, capsys):
    """A program file of the recorded size that is not a program: the store takes it as built,
    the runtime refuses it, and the profile stops naming the file and the command that rebuilds it."""
    d = tmp_path / "store" / "tiny" / "video-encoder" / QUANTS[0]
    shutil.copytree(et_store / "tiny" / "video-encoder" / QUANTS[0], d)
    pte = d / "model.pte"
    pte.write_bytes(b"\0" * pte.stat().st_size)
    argv = ["profile", "--preset", "tiny", "--model", "video-encoder", "--quant", QUANTS[0], "--quick", "--no-corun",
            "--threads", "1", "--samples", "1", "--storage-mb", "8", "--store", str(tmp_path / "store"),
            "--out", str(tmp_path / "p.json")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"program {pte} cannot be loaded" in err
    assert f"atomsim models build --preset tiny --model video-encoder --quant {QUANTS[0]} --store" in err
    assert "--force`" in err   # the store takes the file as built: only a forced build replaces it
    assert not (tmp_path / "p.json").exists()


def test_overlapped_program_loads_count_their_files_as_weights(et_store):
    """Two program loads at once (parallel lanes): the runner cannot split their RSS growth, so each
    counts its program file and the decoder's embeddings table (not 0: a program has no torch module)."""
    from atomsim.run.memory import MemoryMonitor
    mon = MemoryMonitor(SimpleNamespace(add_memory=lambda t, **b: None), t0=0.0)
    steps = {m: SimpleNamespace(id=f"load-{m}", kind="load", instance=m) for m in ("video-encoder", "decoder")}
    for s in steps.values():
        mon.step_started(s)
    for m, s in steps.items():
        mon.step_finished(s, models.load("tiny", m, QUANTS[0], store=et_store))
    assert mon.overlapped == set(steps)
    for m in steps:
        size = sum(f.stat().st_size for f in models.weight_files("tiny", m, QUANTS[0], store=et_store))
        assert 0 <= size - mon.weights[m] < 4096, m   # the files less the safetensors header
