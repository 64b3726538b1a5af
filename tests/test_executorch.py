"""ExecuTorch: a real ETDump, made here from a tiny exported module, imported into a profile and
checked against the program it ran."""
from __future__ import annotations

import pytest

pytest.importorskip("executorch")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from atomsim.cli import main  # noqa: E402
from atomsim.schema.profile import load_profile  # noqa: E402

pytestmark = pytest.mark.slow


class TwoLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(16, 32), nn.Linear(32, 8)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def export(path, delegate: bool):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge, to_edge_transform_and_lower
    torch.manual_seed(0)
    ep = torch.export.export(TwoLinear().eval(), (torch.randn(2, 16),))
    edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]) if delegate else to_edge(ep)
    path.write_bytes(edge.to_executorch().buffer)
    return path


def run_with_etdump(pte, etdump, n=3):
    from executorch.extension.pybindings.portable_lib import _load_for_executorch
    m = _load_for_executorch(str(pte), enable_etdump=True, debug_buffer_size=0)
    for _ in range(n):
        m.forward((torch.randn(2, 16),))
    m.write_etdump_result_to_file(str(etdump))
    return etdump


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    d = tmp_path_factory.mktemp("et")
    xnn = export(d / "xnnpack.pte", delegate=True)
    portable = export(d / "portable.pte", delegate=False)
    return {"pte": xnn, "dump": run_with_etdump(xnn, d / "xnnpack.etdp"),
            "other_pte": portable, "other_dump": run_with_etdump(portable, d / "portable.etdp")}


def test_real_etdump_imports_execute_samples_and_checks_program(dumps, tmp_path, capsys):
    from executorch.devtools import Inspector
    into = tmp_path / "p.json"
    assert main(["profile", "import", str(dumps["dump"]), "--format", "etdump", "--program", str(dumps["pte"]),
                 "--as", "video-encoder/fp32:encode", "--threads", "1", "--device", "host", "--into", str(into)]) == 0
    assert "not in the etdump file (left empty): resident_bytes, load.cold_s, load.warm_s" in capsys.readouterr().out
    m = load_profile(into).modules["video-encoder/fp32"]
    st = m.ops["encode"].latency_s["1"]
    execute = next(e for b in Inspector(etdump_path=str(dumps["dump"])).event_blocks for e in b.events
                   if e.name == "Method::execute")
    assert st.n == 3 and st.samples == pytest.approx([x / 1e3 for x in execute.perf_data.raw])   # ms -> s
    assert m.file_bytes == dumps["pte"].stat().st_size
    assert m.resident_bytes is None and m.load.cold_s is None and m.ops["encode"].activation_peak_bytes is None
    assert m.tool_figures["etdump load_method_s"]["n"] == 1
    assert any(k.startswith("Fully Connected") for k in m.ops["encode"].tool_figures["etdump kernels"])
    src = m.imported["ops.encode.latency_s.1"]
    assert src.tool == "etdump" and src.device == "host" and "Inspector" in src.note


def test_etdump_of_another_program_is_refused(dumps, tmp_path, capsys):
    into = tmp_path / "p.json"
    rc = main(["profile", "import", str(dumps["other_dump"]), "--format", "etdump", "--program", str(dumps["pte"]),
               "--as", "video-encoder/fp32:encode", "--threads", "1", "--into", str(into)])
    err = capsys.readouterr().err
    assert rc == 2 and "portable.etdp: field 'Execute." in err and "an ETDump of another program" in err
    assert not into.exists()


def test_not_an_etdump_is_refused(tmp_path, capsys):
    junk = tmp_path / "results.json"
    junk.write_text('{"execution_summary": {}}')
    rc = main(["profile", "import", str(junk), "--format", "etdump", "--as", "video-encoder/fp32:encode",
               "--threads", "1", "--into", str(tmp_path / "p.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "results.json: not an ETDump" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ the zoo's modules as programs

@pytest.fixture(scope="module")
def programs(tmp_path_factory, et_store):
    """The tiny video encoder under both backends, the tiny Llama and BERT decoders (fp32), through
    `atomsim models export`, which copies the programs of the model store (built by et_store)."""
    import time
    root = tmp_path_factory.mktemp("pte")
    took = {}
    for quant, mods in (("executorch-xnnpack", ["video-encoder", "decoder", "bert-decoder"]),
                        ("executorch-xnnpack-int8", ["video-encoder"])):
        t0 = time.perf_counter()
        argv = ["models", "export", "--format", "pte", "--preset", "tiny", "--quant", quant, "--store", str(et_store),
                "--out", str(root / quant)]
        assert main(argv + [a for m in mods for a in ("--model", m)]) == 0
        took[quant] = time.perf_counter() - t0
    return root, et_store, took


def test_manifest_says_what_each_program_expects_and_what_was_not_exported(programs):
    from atomsim.models.executorch_backend import read_manifest
    root, _, took = programs
    fp = read_manifest(root / "executorch-xnnpack")
    progs = {p["model"]: p for p in fp["programs"]}
    assert progs["video-encoder"]["inputs"] == [{"name": "frames", "dtype": "float32", "shape": [6, 3, 224, 224]}]
    assert progs["decoder"]["inputs"][0] == {"name": "inputs_embeds", "dtype": "float32", "shape": [1, None, 64]}
    assert progs["decoder"]["max_cache_len"] == 256
    assert progs["decoder"]["methods"]["beam"]["inputs"] == [
        {"name": "inputs_embeds", "dtype": "float32", "shape": [4, None, 64]},
        {"name": "cache_position", "dtype": "int64", "shape": [None]},
        {"name": "parents", "dtype": "int64", "shape": [4]}]
    assert (root / "executorch-xnnpack" / "video-encoder.pte").stat().st_size == progs["video-encoder"]["bytes"]
    assert fp["not_exported"] == {} and progs["bert-decoder"]["inputs"][0] == {
        "name": "input_ids", "dtype": "int64", "shape": [4, None]}
    q8 = read_manifest(root / "executorch-xnnpack-int8")
    assert [p["model"] for p in q8["programs"]] == ["video-encoder"] and q8["quant"] == "executorch-xnnpack-int8"
    print(f"export times (s): {took}")


def test_video_encoder_programs_compute_what_the_module_does(programs):
    from atomsim import models
    from atomsim.models.executorch_backend import load_program, run
    root, store, _ = programs
    mod = models.load("tiny", "video-encoder", "fp32", store=store)
    frames = mod.example_inputs("encode")[0]
    want = mod.encode(frames)
    got = run(load_program(root / "executorch-xnnpack" / "video-encoder.pte"), frames)[0]
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-3)
    q8 = run(load_program(root / "executorch-xnnpack-int8" / "video-encoder.pte"), frames)[0]
    assert torch.nn.functional.cosine_similarity(q8, want, dim=0) > 0.99 and not torch.equal(q8, got)


def test_decoder_prefill_and_decode_steps_match_the_module(programs):
    """Prefill with a caption's prefix (feature + BOS embedding), then decode steps, token loop in
    Python: the same greedy tokens as transformers' generate on the eager module."""
    from atomsim import models
    from atomsim.models.executorch_backend import greedy, load_program
    root, store, _ = programs
    mod = models.load("tiny", "decoder", "fp32", store=store)
    lm = mod.net.lm
    emb = lm.model.embed_tokens.weight.detach()
    feat = torch.randn(1, 1, lm.config.hidden_size, generator=torch.Generator().manual_seed(1))
    prefix = torch.cat([feat, emb[1].reshape(1, 1, -1)], dim=1)
    with torch.inference_mode():
        eager = lm.generate(inputs_embeds=prefix, attention_mask=torch.ones(1, 2, dtype=torch.long), do_sample=False,
                            num_beams=1, min_new_tokens=6, max_new_tokens=6, eos_token_id=None, pad_token_id=0)
    got = greedy(load_program(root / "executorch-xnnpack" / "decoder.pte"), emb, prefix, 6)
    assert got == [int(t) for t in eager[0, -6:]]


def test_profile_an_exported_module_from_its_etdump(programs, tmp_path):
    """The ETDump of the exported encoder run here, imported as its backend's figures."""
    from atomsim.models.executorch_backend import etdump_run
    from atomsim.profile.imports import import_file
    root, _, _ = programs
    pte = root / "executorch-xnnpack" / "video-encoder.pte"
    dump = etdump_run(pte, (torch.randn(6, 3, 224, 224),), tmp_path / "enc.etdp", runs=3, threads=1)
    prof, written, _ = import_file(dump, "etdump", "video-encoder/executorch-xnnpack:encode", tmp_path / "p.json",
                                   threads=1, program=pte, device="host")
    m = prof.modules["video-encoder/executorch-xnnpack"]
    assert m.ops["encode"].latency_s["1"].n == 3 and m.file_bytes == pte.stat().st_size
    assert "ops.encode.latency_s.1" in written


def test_profile_programs_measures_every_figure_of_the_encoder(programs, tmp_path, capsys):
    from atomsim.models.executorch_backend import planned_bytes
    root, _, _ = programs
    d = root / "executorch-xnnpack-int8"
    into = tmp_path / "host-et.json"
    assert main(["profile", "programs", str(d), "--into", str(into), "--threads", "1,2", "--runs", "2",
                 "--loads", "2", "--device", "host"]) == 0
    assert "video-encoder: profiled" in capsys.readouterr().out
    p = load_profile(into)
    m = p.module("video-encoder", "executorch-xnnpack-int8")   # raises if a figure the simulator needs is empty
    assert m.missing("encode") == [] and p.baseline_rss_bytes > 0
    assert sorted(m.ops["encode"].latency_s) == ["1", "2"] and m.ops["encode"].latency_s["2"].n == 2
    assert m.load.cold_s.n == 2 and m.load.warm_s.n == 2 and m.load.cold_evicted in (True, None)
    assert m.ops["encode"].activation_peak_bytes == planned_bytes(d / "video-encoder.pte") > 0
    assert m.ops["encode"].input_bytes == 6 * 3 * 224 * 224 * 4
    assert m.file_bytes == (d / "video-encoder.pte").stat().st_size
