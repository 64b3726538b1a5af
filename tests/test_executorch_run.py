"""ExecuTorch backends in the model store and the runner: every tiny module exported under both
backends, loaded through `models.load`, one op run against the torch module; tiny runs through
`atomsim run` on a video made here."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("executorch")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import videos as tv  # noqa: E402

from atomsim import models  # noqa: E402
from atomsim.cli import main  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
QUANTS = ("executorch-xnnpack", "executorch-xnnpack-int8")


def _close(got, want, quant):
    if quant == "executorch-xnnpack":
        return torch.allclose(got, want, atol=1e-4, rtol=1e-3)
    return float(torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0)) > 0.98


@pytest.mark.parametrize("quant", QUANTS)
def test_every_module_loads_and_computes_what_the_torch_module_does(et_store, quant):
    feats = {}
    for m in models.MODELS:
        mod, ref = models.load("tiny", m, quant, store=et_store), models.load("tiny", m, "fp32", store=et_store)
        assert type(mod).__name__ == "ProgramModule" and mod.name == f"{m}/{quant}"
        files = models.weight_files("tiny", m, quant, store=et_store)
        assert files[0].name == "model.pte" and all(f.exists() for f in files)
        if m == "video-encoder":
            x = mod.example_inputs("encode")[0]
            feats[m] = got = mod.encode(x)
            assert _close(got, ref.encode(x), quant)
        elif m == "sentence-encoder":
            texts = ["a dog runs on the beach", "a person is cooking", "w12 w7 w99", "x", "y", "z", "seven"]
            got = mod.embed(texts)   # 7 texts: two calls of the 5-row program, the second padded
            assert got.shape == (7, 384) and _close(got, ref.embed(texts), quant)
        elif m == "bert-decoder":
            f = torch.randn(mod.feature_dim(), generator=torch.Generator().manual_seed(2))
            got = mod.caption(f, beam=4, tokens=6)
            assert len(got) == 6
            if quant == "executorch-xnnpack":   # the same beam search as the torch module's, without its cache
                assert got == ref.caption(f, beam=4, tokens=6)
        else:
            f = torch.randn(mod.feature_dim(), generator=torch.Generator().manual_seed(2))
            got = mod.caption(f, beam=4, tokens=6)   # the program's beam method
            assert len(got) == 6 and isinstance(mod.generate("a short prompt", tokens=4), str)
            if quant == "executorch-xnnpack":
                assert got == ref.caption(f, beam=4, tokens=6)
                assert mod.caption(f, beam=1, tokens=6) == ref.caption(f, beam=1, tokens=6)   # forward, greedy
        mod.free()
        ref.free()
        with pytest.raises(RuntimeError, match="freed"):
            mod.example_inputs(models.OPS[m][0])


def test_decoder_program_beam_search_gives_the_torch_modules_beam_captions(et_store):
    """The `beam` method (batch 4, cache rows reordered by the beams' parents) under the host's beam
    search: transformers' beam-4 captions of the torch module, which differ from the greedy ones."""
    from atomsim.errors import ModelStoreError
    mod = models.load("tiny", "decoder", "executorch-xnnpack", store=et_store)
    ref = models.load("tiny", "decoder", "fp32", store=et_store)
    assert mod.entry["methods"]["beam"]["batch"] == 4
    for seed in range(4):
        f = torch.randn(mod.feature_dim(), generator=torch.Generator().manual_seed(seed))
        want = ref.caption(f, beam=4, tokens=8)
        assert mod.caption(f, beam=4, tokens=8) == want != ref.caption(f, beam=1, tokens=8), seed
    with pytest.raises(ModelStoreError, match="runs beam 4 .or 1.; asked beam 3"):
        mod.caption(f, beam=3, tokens=2)
    mod.entry = {k: v for k, v in mod.entry.items() if k != "methods"}   # a program exported before the beam method
    with pytest.raises(ModelStoreError, match="no beam method .* --force"):
        mod.caption(f, beam=4, tokens=2)


_BEAM_AFTER_FORWARD = """
import sys
from atomsim.models import executorch_weights as w
if sys.argv[2] == "off":
    w._state.update(on=False, why="off")
elif not w.share_packed_weights():
    raise SystemExit(w.enabled()[1])
from executorch.extension.pybindings import _C
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096
prog = _C._load_program(sys.argv[1], enable_etdump=False, debug_buffer_size=0,
                        program_verification=_C.Verification.InternalConsistency, data_path=None)
forward = prog.load_method("forward")
before = rss()
beam = prog.load_method("beam")
print(rss() - before)
"""


def test_decoder_methods_share_one_packed_copy_of_the_weights(et_store):
    """With XNNPACK's weight cache on (executorch_weights), loading the `beam` method after `forward`
    packs no second copy of the weights; off, it does (tiny fp32: +268 KB against +816 KB here)."""
    import subprocess
    pte = et_store / "tiny" / "decoder" / "executorch-xnnpack" / "model.pte"
    grew = {m: int(subprocess.run([sys.executable, "-c", _BEAM_AFTER_FORWARD, str(pte), m], capture_output=True,
                                  text=True, check=True).stdout.split()[-1]) for m in ("on", "off")}
    assert grew["off"] - grew["on"] > pte.stat().st_size / 2, grew


def test_store_metadata_names_the_program_and_its_source(et_store):
    d = et_store / "tiny" / "decoder" / "executorch-xnnpack-int8"
    meta = json.loads((d / "atomsim.json").read_text())
    assert sorted(meta["files"]) == ["embeddings.safetensors", "model.pte"]
    assert meta["program"]["inputs"][0]["name"] == "inputs_embeds" and meta["versions"]["executorch"]
    assert meta["exported_from"].startswith("tiny/decoder/fp32")
    assert models.build("tiny", "decoder", "executorch-xnnpack-int8", store=et_store) == d   # built: not again


def _scenario(tmp_path, task, quant, policy) -> Path:
    text = (ROOT / "scenarios" / "examples" / f"{task}-tiny.yaml").read_text()
    text = text.replace("quant: fp32", f"quant: {quant}").replace("policy: reuse-parallel", f"policy: {policy}")
    p = tmp_path / f"{task}-{quant}.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("task,quant,policy", [("assembly", "executorch-xnnpack-int8", "reload"),
                                               ("retrieval", "executorch-xnnpack", "reuse-parallel")])
def test_run_through_the_programs(et_store, tmp_path, task, quant, policy):
    """reload uses all four modules (BERT captions, a separate Llama for the script); reuse-parallel
    runs the encoder and the decoder programs on two lanes at once."""
    from atomsim.plan import make_plan
    from atomsim.schema.scenario import load_scenario
    video = tv.make_video(tmp_path / "v.mp4", seconds=16.0, width=96, height=64, fps=6)   # 2 clips
    sc = _scenario(tmp_path, task, quant, policy)
    out = tmp_path / "out"
    assert main(["run", str(sc), "--videos", str(video), "--store", str(et_store), "--out", str(out),
                 "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["outcome"] == "completed" and summary["clips"] == 2 and summary["policy"] == policy
    plan = make_plan(load_scenario(sc), policy, clips=2)
    trace = json.loads((out / "trace.json").read_text())
    assert sorted(e["name"] for e in trace["traceEvents"] if e["ph"] == "X") == sorted(s.id for s in plan.steps)
    assert summary["steps"] == len(plan.steps)
    assert {v for v in summary["instances"].values()} == {f"{r.model}/{quant}" for r in plan.instances.values()}
    assert [ld["file_bytes"] > 0 for ld in summary["loads"]] == [True] * len([s for s in plan.steps if s.kind == "load"])
    results = json.loads((out / "results.json").read_text())
    if task == "assembly":
        assert (out / "assembly.mp4").exists() and results["outputs"]["script"]["text"] is not None
    else:
        assert all(len(q["ranked"]) == 2 for q in results["outputs"]["ranking"])


def test_frames_of_another_shape_are_refused(et_store):
    from atomsim.errors import ModelStoreError
    mod = models.load("tiny", "video-encoder", "executorch-xnnpack", store=et_store)
    with pytest.raises(ModelStoreError, match=r"takes frames of shape \[6, 3, 224, 224\], got \[4, 3, 224, 224\]"):
        mod.encode(torch.zeros(4, 3, 224, 224))


def test_a_thread_count_change_loads_the_program_again(et_store):
    """A program keeps XNNPACK's pool of its load: after a resize it loads its method again
    (running it on the freed pool crashed the process), and computes the same."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        mod = models.load("tiny", "decoder", "executorch-xnnpack", store=et_store)
        f = torch.randn(mod.feature_dim(), generator=torch.Generator().manual_seed(4))
        want = mod.caption(f, tokens=5)
        torch.set_num_threads(1)
        got = [mod.caption(f, tokens=5) for _ in range(3)]
        assert mod.reloads == 1 and got == [want] * 3
    finally:
        torch.set_num_threads(before)
