"""`atomsim profile export --pyperf`: pyperf's own tools read the suite; `profile compare` decides
significance as `pyperf compare_to` does."""
from __future__ import annotations

import subprocess
import sys

import pyperf
import pytest

from atomsim.cli import main
from atomsim.schema.profile import Load, ModuleProfile, Op, Profile, Stat, save_profile


def make_profile(encode_1t, encode_2t, cold=(0.50, 0.52, 0.55, 0.51, 0.53), activation=8_000_000) -> Profile:
    mod = ModuleProfile(
        model="video-encoder", quant="fp32", file_bytes=40_000_000, resident_bytes=42_000_000,
        load=Load(cold_s=Stat.of(cold, warmups=[0.9]), warm_s=Stat.of([0.20, 0.21, 0.22]),
                  transient_bytes=(0, 0)),
        ops={"encode": Op(latency_s={"1": Stat.of(encode_1t, warmups=[1.5]), "2": Stat.of(encode_2t)},
                          activation_peak_bytes=activation)})
    return Profile(version=1, source="measured", preset="tiny", device={"cpu_model": "test cpu"},
                   baseline_rss_bytes=400_000_000, modules={"video-encoder/fp32": mod})


def pyperf_cli(*args) -> str:
    r = subprocess.run([sys.executable, "-m", "pyperf", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def pyperf_block(out: str, name: str) -> str:
    """The lines compare_to -v prints under one benchmark's underlined title."""
    return out.split(f"{name}\n{'=' * len(name)}\n")[1].split("\n\n")[0]


@pytest.fixture
def two_exports(tmp_path):
    a = make_profile([1.00, 1.02, 0.98, 1.01, 0.99], [0.60, 0.61, 0.59])
    b = make_profile([1.50, 1.52, 1.49, 1.51, 1.50], [0.60, 0.62, 0.58])   # encode @1t: 1.5x slower
    paths = {}
    for name, prof in (("a", a), ("b", b)):
        save_profile(prof, tmp_path / f"{name}.json")
        assert main(["profile", "export", str(tmp_path / f"{name}.json"), "--pyperf", str(tmp_path / f"{name}.pyperf.json")]) == 0
        paths[name] = tmp_path / f"{name}.pyperf.json"
    return a, b, paths


def test_export_holds_every_series_with_units_and_warmups(two_exports):
    a, _, paths = two_exports
    suite = pyperf.BenchmarkSuite.load(str(paths["a"]))
    benches = {bench.get_name(): bench for bench in suite}
    cold = benches["video-encoder/fp32 load cold"]
    assert cold.get_unit() == "second" and list(cold.get_values()) == a.modules["video-encoder/fp32"].load.cold_s.samples
    assert cold.get_runs()[0].warmups == ((1, 0.9),)
    assert list(benches["video-encoder/fp32:encode @2t"].get_values()) == [0.60, 0.61, 0.59]
    assert benches["video-encoder/fp32 resident"].get_unit() == "byte"
    assert benches["video-encoder/fp32 resident"].get_values() == (42_000_000,)
    assert benches["video-encoder/fp32:encode activation peak"].get_values() == (8_000_000,)
    assert benches["baseline rss"].get_values() == (400_000_000,)
    # pyperf refuses values <= 0: the empty transient range is left out, and said so
    assert "video-encoder/fp32 load transient high" not in benches
    assert "load transient high" in suite.get_metadata()["atomsim_left_out"]
    assert suite.get_metadata()["atomsim_source"] == "measured"
    # durations are the timed seconds (memory readings 0), never bytes summed as seconds
    assert abs(cold.get_total_duration() - (sum(a.modules["video-encoder/fp32"].load.cold_s.samples) + 0.9)) < 1e-9
    assert benches["baseline rss"].get_total_duration() == 0


def test_pyperf_stats_hist_and_compare_to_read_the_export(two_exports):
    _, _, paths = two_exports
    stats = pyperf_cli("stats", str(paths["a"]))
    assert "video-encoder/fp32:encode @1t" in stats and "Median +- MAD" in stats
    assert "Number of benchmarks: 8" in stats
    pyperf_cli("hist", str(paths["a"]))
    out = pyperf_cli("compare_to", "-v", str(paths["a"]), str(paths["b"]))
    block = pyperf_block(out, "video-encoder/fp32:encode @1t")
    assert "1.50x slower" in block and "Significant (t=" in block


def test_compare_significance_agrees_with_pyperf_compare_to(two_exports, tmp_path, capsys):
    _, _, paths = two_exports
    capsys.readouterr()
    assert main(["profile", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    ours = {line.split()[0] + " " + line.split()[1]: line for line in capsys.readouterr().out.splitlines()
            if line.startswith("video-encoder/fp32:encode @")}
    assert "(significant)" in ours["video-encoder/fp32:encode @1t"]
    assert "(not significant)" in ours["video-encoder/fp32:encode @2t"]
    theirs = pyperf_cli("compare_to", "-v", str(paths["a"]), str(paths["b"]))
    assert "Significant (t=" in pyperf_block(theirs, "video-encoder/fp32:encode @1t")
    assert "Not significant!" in pyperf_block(theirs, "video-encoder/fp32:encode @2t")


def test_compare_says_untested_where_pyperf_cannot_test(tmp_path, capsys):
    a = make_profile([1.0, 1.1, 0.9], [0.6, 0.6, 0.7])
    b = make_profile([1.0, 1.1, 0.9, 1.0, 1.2], [0.6, 0.6, 0.7])   # 3 vs 5 samples
    save_profile(a, tmp_path / "a.json")
    save_profile(b, tmp_path / "b.json")
    capsys.readouterr()
    assert main(["profile", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("video-encoder/fp32:encode @1t"))
    assert "(untested)" in line


def test_export_is_atomic_and_gzip(tmp_path, monkeypatch, capsys):
    save_profile(make_profile([1.0, 1.1], [0.6, 0.7]), tmp_path / "p.json")
    out = tmp_path / "p.pyperf.json"
    out.write_text("previous\n")

    def broken(self, fp, compact=True, replace=False):
        fp.write('{"version": "1.0", "benchmarks": [')
        raise OSError("disk full")

    monkeypatch.setattr(pyperf.BenchmarkSuite, "dump", broken)
    with pytest.raises(OSError):
        main(["profile", "export", str(tmp_path / "p.json"), "--pyperf", str(out)])
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json", "p.pyperf.json"]
    monkeypatch.undo()
    gz = tmp_path / "p.json.gz"
    assert main(["profile", "export", str(tmp_path / "p.json"), "--pyperf", str(gz)]) == 0
    assert len(pyperf.BenchmarkSuite.load(str(gz))) == 8
    assert "left out (empty, or <= 0, which pyperf refuses): video-encoder/fp32 load transient high" in capsys.readouterr().out


def test_export_of_an_imported_profile_leaves_out_its_empty_figures(tmp_path):
    from atomsim.profile.imports import import_file
    from pathlib import Path
    fixture = Path(__file__).parent / "fixtures" / "phone-tools" / "llama-bench.json"
    import_file(fixture, "llama-bench", "decoder/fp32:generate", tmp_path / "p.json")
    assert main(["profile", "export", str(tmp_path / "p.json"), "--pyperf", str(tmp_path / "p.pyperf.json")]) == 0
    suite = pyperf.BenchmarkSuite.load(str(tmp_path / "p.pyperf.json"))
    assert sorted(suite.get_benchmark_names()) == ["decoder/fp32:generate @2t", "decoder/fp32:generate @4t"]
    assert "decoder/fp32 load cold" in suite.get_metadata()["atomsim_left_out"]
