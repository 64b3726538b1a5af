"""ExecuTorch programs of one's own as pipeline modules (issue 24 point 4): tiny programs exported
here with the zoo's lowering (XNNPACK), each with a manifest, profiled, simulated and run beside
a Hugging Face captioner."""
from __future__ import annotations

import json

import pytest
import yaml

from atomsim.cli import main

pytest.importorskip("executorch")
pytestmark = pytest.mark.slow


def export_programs(d):
    import torch

    from atomsim.models.executorch_backend import lower
    from atomsim.models.hf_make import train_tokenizer

    class Eyes(torch.nn.Module):      # frames [4, 3, 64, 64] -> a 8-d clip vector
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 8, stride=8)

        def forward(self, frames):
            return self.conv(frames).mean(dim=(0, 2, 3))

    class Words(torch.nn.Module):     # input_ids, attention_mask [2, 16] -> mean-pooled [2, 16]
        def __init__(self, vocab):
            super().__init__()
            self.emb = torch.nn.Embedding(vocab, 16)

        def forward(self, input_ids, attention_mask):
            m = attention_mask.unsqueeze(-1).float()
            return (self.emb(input_ids) * m).sum(1) / m.sum(1).clamp(min=1.0)

    torch.manual_seed(0)
    tok = train_tokenizer("text-encoder", vocab_size=300)
    tok.save_pretrained(str(d / "tokenizer"))
    frames = torch.randn(4, 3, 64, 64)
    ids = torch.zeros(2, 16, dtype=torch.long)
    (d / "eyes.pte").write_bytes(lower(Eyes().eval(), (frames,), None, "executorch-xnnpack"))
    (d / "words.pte").write_bytes(lower(Words(len(tok)).eval(), (ids, ids), None, "executorch-xnnpack"))
    (d / "eyes.json").write_text(json.dumps({"kind": "vision-encoder", "inputs": [
        {"name": "frames", "dtype": "float32", "shape": [4, 3, 64, 64]}]}))
    (d / "words.json").write_text(json.dumps({"kind": "text-encoder", "tokenizer": "tokenizer", "inputs": [
        {"name": "input_ids", "dtype": "int64", "shape": [2, 16]},
        {"name": "attention_mask", "dtype": "int64", "shape": [2, 16]}]}))


PIPELINE = {
    "version": 1, "name": "programs",
    "modules": {"eyes": {"pte": "eyes.pte", "kind": "vision-encoder"},
                "cap": {"hf": "cap", "kind": "vision2seq"},
                "words": {"pte": "words.pte", "kind": "text-encoder"}},
    "stages": [
        {"name": "see", "foreach": "clip", "module": "eyes", "op": "encode", "in": ["frames"], "out": "feats"},
        {"name": "caption", "foreach": "clip", "module": "cap", "op": "caption", "in": ["frames"], "out": "captions",
         "args": {"beam": 1, "tokens": 5}},
        {"name": "index", "foreach": "request", "module": "words", "op": "embed", "in": ["captions"], "out": "idx"},
        {"name": "ask", "foreach": "request", "module": "words", "op": "embed", "in": ["queries"], "out": "q"},
        {"name": "rank", "foreach": "request", "op": "rank", "in": ["q", "idx"], "out": "ranking", "args": {"top_k": 2}},
    ],
}


@pytest.fixture(scope="module")
def progs(tmp_path_factory):
    from atomsim.models.hf_make import make_checkpoint
    from atomsim.run.synthetic import make_video
    d = tmp_path_factory.mktemp("programs")
    export_programs(d)
    make_checkpoint("vision2seq", d / "cap", size="tiny")
    (d / "pipe.yaml").write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
    sc = {"name": "progs", "device": "host", "pipeline": "pipe.yaml", "profile": "profile.json",
          "workload": {"queries": ["a dog", "a car", "a cat"], "frames_per_clip": 4, "frame_size": 64,
                       "clip_length_s": 4, "clip_stride_s": 4},
          "models": {"quant": "fp32"}, "threads": {"main": 1}}
    (d / "sc.yaml").write_text(yaml.safe_dump(sc, sort_keys=False))
    make_video(d / "v.mp4", seconds=8.0)
    assert main(["profile", "--pipeline", str(d / "pipe.yaml"), "--quick", "--samples", "1", "--threads", "1",
                 "--op-budget", "0", "--storage-mb", "8", "--frames", "4", "--frame-size", "64",
                 "--store", str(d / "store"), "--out", str(d / "profile.json")]) == 0
    return d


def test_programs_are_profiled_as_their_own_backend(progs):
    prof = json.loads((progs / "profile.json").read_text())
    assert set(prof["modules"]) == {"eyes/pte", "cap/fp32", "words/pte"}
    eyes = prof["modules"]["eyes/pte"]
    assert eyes["file_bytes"] == (progs / "eyes.pte").stat().st_size and eyes["ops"]["encode"]["latency_s"]["1"]
    assert prof["modules"]["words/pte"]["ops"]["embed"]["items"] == 5
    assert [(c["a"], c["b"]) for c in prof["corun"]] == [("eyes/pte:encode", "cap/fp32:caption")]


def test_programs_simulate_and_run(progs):
    out = progs / "sim"
    assert main(["simulate", str(progs / "sc.yaml"), "--clips", "2", "--out", str(out), "--no-png"]) == 0
    assert json.loads((out / "reuse-parallel" / "summary.json").read_text())["completed"]
    run = progs / "run"
    assert main(["run", str(progs / "sc.yaml"), "--videos", str(progs / "v.mp4"), "--store", str(progs / "store"),
                 "--out", str(run), "--policy", "reload", "--no-progress"]) == 0
    r = json.loads((run / "results.json").read_text())
    ranked = r["outputs"]["ranking"]
    assert [q["query"] for q in ranked] == ["a dog", "a car", "a cat"] and all(len(q["ranked"]) == 2 for q in ranked)
    assert all(abs(c["score"]) <= 1.0 + 1e-6 for q in ranked for c in q["ranked"])   # normalized vectors
    loads = json.loads((run / "summary.json").read_text())["loads"]
    assert [ld["module"] for ld in loads] == ["eyes/pte", "cap/fp32", "words/pte"]


def test_a_program_without_its_manifest_is_named(progs, tmp_path, capsys):
    import shutil
    shutil.copy(progs / "eyes.pte", tmp_path / "eyes.pte")
    bad = {**PIPELINE, "modules": {"eyes": {"pte": "eyes.pte", "kind": "vision-encoder"}}, "stages": PIPELINE["stages"][:1]}
    (tmp_path / "pipe.yaml").write_text(yaml.safe_dump(bad))
    sc = yaml.safe_load((progs / "sc.yaml").read_text())
    (tmp_path / "sc.yaml").write_text(yaml.safe_dump({**sc, "profile": None}))
    assert main(["simulate", str(tmp_path / "sc.yaml"), "--profile", str(progs / "profile.json"),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "module 'eyes': field 'manifest'" in err
