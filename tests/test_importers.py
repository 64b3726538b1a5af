"""`atomsim profile import`: Minibench, AI Hub and llama-bench files (fixtures written from their
documented fields, tests/fixtures/phone-tools/README.md) into profiles; provenance; what a source
lacks stays empty and the simulator names it; bad input is refused naming file and field and
leaves the target profile as it was. The real-ETDump tests are in tests/test_executorch.py."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from atomsim.cli import main
from atomsim.errors import ConfigError
from atomsim.profile.imports import import_file
from atomsim.schema.profile import load_profile

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "phone-tools"
SCENARIO = ROOT / "scenarios" / "paper" / "retrieval-pixel_5a.yaml"
ENC = "video-encoder/torchao-int8"


@pytest.fixture
def published(tmp_path):
    """A copy of the published Pixel 5a profile: every figure there, to replace some of."""
    p = tmp_path / "phone.json"
    shutil.copy(ROOT / "profiles" / "paper-pixel_5a.json", p)
    return p


def test_minibench_replaces_what_it_has_and_keeps_the_rest(published, tmp_path, capsys):
    before = load_profile(published).modules[ENC]
    assert main(["profile", "import", str(FIX / "minibench-benchmark_results.json"), "--format", "minibench",
                 "--as", f"{ENC}:encode", "--threads", "4", "--into", str(published)]) == 0
    assert "not in the minibench file (left empty): file_bytes, load.warm_s" in capsys.readouterr().out
    m = load_profile(published).modules[ENC]
    assert m.ops["encode"].latency_s["4"].samples == [0.4125]
    assert m.load.cold_s.samples == [1.25]
    assert m.resident_bytes == 655 << 20
    assert m.load.warm_s == before.load.warm_s and m.file_bytes == before.file_bytes   # kept
    src = m.imported["ops.encode.latency_s.4"]
    assert src.tool == "minibench" and src.tool_version is None and src.device == "google Pixel 8 Android 14"
    assert src.file == str(FIX / "minibench-benchmark_results.json") and len(src.sha256) == 64
    assert "load.warm_s" in src.not_in_source and "ops.encode.activation_peak_bytes" in src.not_in_source
    assert set(m.imported) == {"ops.encode.latency_s.4", "load.cold_s", "resident_bytes"}
    # it covers the plan: the simulator runs on it
    assert main(["simulate", str(SCENARIO), "--profile", str(published), "--policy", "reuse-serial",
                 "--no-png", "--out", str(tmp_path / "sim")]) == 0
    capsys.readouterr()
    assert main(["profile", "show", str(published)]) == 0
    out = capsys.readouterr().out
    assert "412.5 ±0.0 *" in out and "imported figures (marked *" in out
    assert f"* {ENC} load.cold_s: minibench file" in out


def test_aihub_samples_loads_and_activation(published):
    prof, written, lacking = import_file(FIX / "aihub-profile.json", "aihub", f"{ENC}:encode", published,
                                         threads=1, device="Galaxy S24 (Family)")
    m = prof.modules[ENC]
    assert m.ops["encode"].latency_s["1"].samples == pytest.approx([0.0412, 0.04195, 0.04201, 0.0415, 0.04302])
    assert m.load.cold_s.samples == [0.812] and m.load.warm_s.samples == pytest.approx([0.0951, 0.0964, 0.0949])
    assert m.ops["encode"].activation_peak_bytes == 9_200_000
    assert m.tool_figures["aihub inference_memory_peak_range"] == [48_100_000, 52_400_000]
    assert lacking == ["file_bytes", "resident_bytes"]
    assert m.imported["load.cold_s"].device == "Galaxy S24 (Family)"


@pytest.mark.parametrize("name, threads", [("llama-bench.json", ["2", "4"]), ("llama-bench.jsonl", ["4"])])
def test_llama_bench_prefill_plus_decode_per_thread_count(tmp_path, name, threads):
    prof, _, lacking = import_file(FIX / name, "llama-bench", "decoder/torchao-int8:generate", tmp_path / "new.json")
    o = prof.modules["decoder/torchao-int8"].ops["generate"]
    assert sorted(o.latency_s) == threads
    assert o.latency_s["4"].samples == pytest.approx([0.170 + 1.05, 0.168 + 1.02, 0.175 + 1.07])
    assert o.shape == {"prompt_tokens": 128, "tokens": 23}
    src = prof.modules["decoder/torchao-int8"].imported["ops.generate.latency_s.4"]
    assert src.tool_version == "8cf427ff-5163" and "Tensor G3" in src.device
    assert {"load.cold_s", "load.warm_s", "resident_bytes", "file_bytes"} <= set(lacking)


def test_profile_from_imports_alone_names_each_missing_figure(tmp_path, capsys):
    new = tmp_path / "assembled.json"
    import_file(FIX / "aihub-profile.json", "aihub", f"{ENC}:encode", new, threads=4)
    p = load_profile(new)
    assert p.modules[ENC].file_bytes is None and p.baseline_rss_bytes is None   # empty, not invented
    capsys.readouterr()
    rc = main(["simulate", str(SCENARIO), "--profile", str(new), "--policy", "reuse-serial", "--no-png",
               "--allow-profile-mismatch", "--allow-device-mismatch", "--out", str(tmp_path / "sim")])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"needs module '{ENC}'" in err and "lacks file_bytes, resident_bytes, baseline_rss_bytes" in err


def test_null_figure_without_an_import_saying_so_is_refused(published):
    data = json.loads(published.read_text())
    data["modules"][ENC]["resident_bytes"] = None
    published.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"phone\.json: field 'modules\.video-encoder/torchao-int8\.resident_bytes': null, which only an import"):
        load_profile(published)


def _refused(target, *args, match):
    before = target.read_bytes()
    with pytest.raises(ConfigError, match=match):
        import_file(*args, into=target, threads=2)
    assert target.read_bytes() == before   # never half-written
    assert not [p.name for p in target.parent.iterdir() if p.name.startswith(".")]   # no temporary left


def test_wrong_tool_is_named(published):
    _refused(published, FIX / "aihub-profile.json", "minibench", f"{ENC}:encode",
             match=r"aihub-profile\.json: field '\[0\]\.metric': missing: not a minibench file; it looks like a aihub file \(--format aihub\)")
    _refused(published, FIX / "llama-bench.json", "aihub", f"{ENC}:encode",
             match=r"llama-bench\.json: field 'execution_summary': missing: not a aihub file; it looks like a llama-bench")
    _refused(published, published, "llama-bench", f"{ENC}:encode", match=r"phone\.json: .*it looks like an atomsim profile")


def test_missing_field_is_named(published, tmp_path):
    rows = json.loads((FIX / "minibench-benchmark_results.json").read_text())
    del rows[2]["actualValue"]
    bad = tmp_path / "sub" / "benchmark_results.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps(rows))
    _refused(published, bad, "minibench", f"{ENC}:encode", match=r"benchmark_results\.json: field '\[2\]\.actualValue': missing")
    data = json.loads((FIX / "aihub-profile.json").read_text())
    data["execution_summary"]["all_inference_times"] = [1, "x"]
    bad.write_text(json.dumps(data))
    _refused(published, bad, "aihub", f"{ENC}:encode",
             match=r"field 'execution_summary\.all_inference_times': expected a list of positive microseconds")


def test_threads_must_be_known(published, tmp_path):
    before = published.read_bytes()
    with pytest.raises(ConfigError, match=r"field 'threads': a minibench file does not record the thread count; pass --threads"):
        import_file(FIX / "minibench-benchmark_results.json", "minibench", f"{ENC}:encode", published)
    with pytest.raises(ConfigError, match=r"field 'n_threads': the file measured threads \[2, 4\], not --threads 3"):
        import_file(FIX / "llama-bench.json", "llama-bench", "decoder/torchao-int8:generate", published, threads=3)
    assert published.read_bytes() == before


@pytest.mark.parametrize("target, match", [
    ("video-decoder/fp32:encode", r"unknown module 'video-decoder'; valid: bert-decoder, decoder"),
    ("video-encoder/fp32:caption", r"unknown op of video-encoder 'caption'; valid: encode"),
    ("video-encoder/fp64:encode", r"unknown backend 'fp64'"),
    ("video-encoder:encode", r"expected MODULE/BACKEND:OP"),
])
def test_unknown_target_is_named(published, capsys, target, match):
    before = published.read_bytes()
    rc = main(["profile", "import", str(FIX / "aihub-profile.json"), "--format", "aihub", "--as", target,
               "--threads", "1", "--into", str(published)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert f"--as '{target}'" in err
    import re
    assert re.search(match, err), err
    assert published.read_bytes() == before


def test_a_pipelines_own_module_is_accepted_with_its_pipeline(tmp_path, capsys):
    """`--as MODULE` names any module a pipeline names (issue 24): refused without --pipeline, taken
    with it, and the figure lands under the pipeline's name for the module."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"model_type": "vit"}')
    pipe = tmp_path / "pipe.yaml"
    pipe.write_text("version: 1\nname: mine\nmodules: {eyes: {hf: ckpt, kind: vision-encoder}}\n"
                    "stages:\n  - {name: see, foreach: clip, module: eyes, op: encode, in: [frames], out: f}\n")
    into = tmp_path / "phone.json"
    args = ["profile", "import", str(FIX / "aihub-profile.json"), "--format", "aihub", "--as", "eyes/fp32:encode",
            "--threads", "1", "--into", str(into)]
    assert main(args) == 2 and "--pipeline FILE" in capsys.readouterr().err and not into.exists()
    assert main([*args, "--pipeline", str(pipe)]) == 0
    assert load_profile(into).modules["eyes/fp32"].ops["encode"].latency_s["1"].median > 0
    wrong = [a if a != "eyes/fp32:encode" else "eyes/fp32:caption" for a in args]
    assert main([*wrong, "--pipeline", str(pipe)]) == 2
    assert "unknown op of eyes 'caption'; valid: encode" in capsys.readouterr().err
