import shutil
import subprocess
from pathlib import Path

import pytest

import test_report_fakes as fakes
from atomsim.cli import main
from atomsim.report.memory_report import memory_rows, to_html, write_memory_report

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def profiles(tmp_path):
    full = fakes.write_profile(tmp_path / "paper-pixel_5a.json", device="pixel_5a")
    partial = fakes.write_profile(tmp_path / "paper-pixel_8a.json", device="pixel_8a",
                                  models=("video-encoder", "decoder", "sentence-encoder"))
    return tmp_path, full, partial


def test_rows_breakdown_headroom_and_missing_modules(profiles):
    pdir, *_ = profiles
    rows = memory_rows(["pixel_5a", "pixel_8a"], ["paper"], ["torchao-int8", "fp32"], ["reload", "reuse-parallel"],
                       clips=3, profiles_dir=pdir, simulate=fakes.simulate)
    assert len(rows) == 8
    ok = [r for r in rows if not r["error"]]
    for r in ok:
        assert r["peak_bytes"] == sum(r["breakdown"].values())
        assert r["budget_bytes"] == r["ram_bytes"] - r["os_reserved_bytes"]   # the app's budget, from the catalog
        assert r["headroom_bytes"] == r["budget_bytes"] - r["peak_bytes"] and r["fits"] == (r["headroom_bytes"] >= 0)
    err = {(r["device"], r["quant"], r["policy"]): r["error"] for r in rows if r["error"]}
    assert "lacks bert-decoder/torchao-int8" in err[("pixel_8a", "torchao-int8", "reload")]
    assert ("pixel_8a", "torchao-int8", "reuse-parallel") not in err      # reuse needs no bert-decoder
    assert "lacks" in err[("pixel_5a", "fp32", "reload")] and "video-encoder/fp32" in err[("pixel_5a", "fp32", "reload")]


def test_no_profile_says_where_it_looked(tmp_path):
    rows = memory_rows(["galaxy_s23"], ["small"], ["fp32"], ["reload"], profiles_dir=tmp_path, simulate=fakes.simulate)
    assert "no small profile for galaxy_s23" in rows[0]["error"] and "--profile" in rows[0]["error"]


def test_report_files_self_contained(profiles, tmp_path):
    pdir, *_ = profiles
    rows = memory_rows(["pixel_5a", "pixel_8a"], ["paper"], ["torchao-int8"], ["reload", "reuse-serial", "reuse-parallel"],
                       profiles_dir=pdir)   # the real simulator
    files = write_memory_report(rows, tmp_path / "out")
    md, page = (f.read_text() for f in files)
    assert "| pixel_5a | paper | torchao-int8 | reload |" in md and "## Not simulated" in md
    assert "<svg" in page and "pixel_5a app budget 5.50 GB (RAM 6.00 GB)" in page
    for external in ("http://", "https://", "<script", "src=", "<link"):
        assert external not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_cli_report_memory(profiles, tmp_path, capsys):
    _, full, _ = profiles
    code = main(["report", "memory", "--devices", "pixel_5a", "galaxy_s23", "--profile", str(full), "--clips", "2",
                 "--out", str(tmp_path / "o"), "--allow-device-mismatch"])   # the Pixel 5a's profile for the S23 too
    assert code == 0 and (tmp_path / "o" / "memory.html").exists()
    out = capsys.readouterr().out
    assert "6/6 combinations simulated" in out and "WARNING (--allow-device-mismatch)" in out


@pytest.mark.skipif(not shutil.which("chromium"), reason="chromium not installed (apt-get install -y chromium)")
def test_html_renders_in_headless_chromium_without_console_errors(profiles, tmp_path):
    pdir, *_ = profiles
    rows = memory_rows(["pixel_5a", "pixel_8a"], ["paper"], ["torchao-int8"], ["reload", "reuse-parallel"],
                       profiles_dir=pdir, simulate=fakes.simulate)
    page = tmp_path / "memory.html"
    page.write_text(to_html(rows))
    shot = tmp_path / "shot.png"
    r = subprocess.run([str(ROOT / "docs" / "studies" / "render_html.sh"), str(page), str(shot)],
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    assert shot.stat().st_size > 10_000


def test_console_error_is_detected(tmp_path):
    if not shutil.which("chromium"):
        pytest.skip("chromium not installed")
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>console.error('boom')</script></body></html>")
    r = subprocess.run([str(ROOT / "docs" / "studies" / "render_html.sh"), str(page), str(tmp_path / "s.png")],
                       capture_output=True, text=True, timeout=90)
    assert r.returncode != 0 and "boom" in r.stderr
