"""The profile describes an ARM CPU (core types, frequencies, affinity), says when it was measured
under emulation, and records the quantized engine each backend really ran on (issue 15). Fake
/proc/cpuinfo and /sys text: these run on any machine (and under aarch64_check.sh on arm64)."""
import os

import torch

from atomsim import models
from atomsim.models import quant as q
from atomsim.profile import fingerprint as fp
from atomsim.profile import show, worker

# a Raspberry Pi 5 (4 x Cortex-A76) and a big.LITTLE phone (Pixel 5a's Snapdragon 765G:
# 6 x Kryo 475 Silver = A55, 1 + 1 x Kryo 475 Gold = A76, as its kernel prints ARM's own parts)
PI5 = "".join(f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\n"
              f"CPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n" for i in range(4)) \
    + "Revision\t: d04170\nSerial\t\t: 1\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n"
PHONE = "".join(f"processor\t: {i}\nCPU implementer\t: 0x41\nCPU part\t: {'0xd05' if i < 6 else '0xd0b'}\n\n"
                for i in range(8))
X86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU\nflags\t\t: fpu sse2 avx2\n\n"


def fake_sysfs(tmp_path, freqs: dict, capacity: dict | None = None):
    for cpu, (lo, hi) in freqs.items():
        d = tmp_path / f"cpu{cpu}" / "cpufreq"
        d.mkdir(parents=True)
        (d / "cpuinfo_min_freq").write_text(f"{lo}\n")
        (d / "cpuinfo_max_freq").write_text(f"{hi}\n")
        if capacity:
            (tmp_path / f"cpu{cpu}" / "cpu_capacity").write_text(f"{capacity[cpu]}\n")
    return str(tmp_path)


def test_pi5_cores_named_with_frequencies(tmp_path):
    sysfs = fake_sysfs(tmp_path, {i: (1500000, 2400000) for i in range(4)})
    (g,) = fp.core_types(PI5, sysfs)
    assert g["name"] == "Cortex-A76" and g["cpus"] == [0, 1, 2, 3]
    assert (g["min_freq_khz"], g["max_freq_khz"]) == (1500000, 2400000)
    assert fp.cpu_model(PI5) == "Cortex-A76"


def test_big_little_phone_split_into_clusters(tmp_path):
    freqs = {i: (300000, 1804800) for i in range(6)} | {6: (652800, 2208000), 7: (806400, 2400000)}
    sysfs = fake_sysfs(tmp_path, freqs, {i: 416 if i < 6 else 1024 for i in range(8)})
    groups = fp.core_types(PHONE, sysfs)
    assert [(g["name"], g["cpus"], g["max_freq_khz"], g["cpu_capacity"]) for g in groups] == [
        ("Cortex-A55", [0, 1, 2, 3, 4, 5], 1804800, 416), ("Cortex-A76", [6], 2208000, 1024),
        ("Cortex-A76", [7], 2400000, 1024)]


def test_unknown_part_and_x86_and_no_sysfs(tmp_path):
    (g,) = fp.core_types("processor\t: 0\nCPU implementer\t: 0x61\nCPU part\t: 0x022\n", str(tmp_path))
    assert g["name"] == "implementer 0x61 part 0x022" and g["max_freq_khz"] is None
    assert fp.core_types(X86, str(tmp_path)) is None


MAPS_QEMU = ("00400000-00b2c000 r-xp 00000000 fd:01 131 /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n"
             "5500000000-5500001000 r-xp 00000000 fd:01 99 /usr/bin/qemu-aarch64-static\n")
MAPS_NATIVE = "aaaab000-aaaac000 r-xp 00000000 b3:02 4242 /usr/bin/python3.11\n" \
              "ffff0000-ffff1000 r-xp 00000000 00:00 0 [vdso]\n"


def test_emulation_detected_and_native_not():
    native = fp.detect_emulation("aarch64", PI5, {"/proc/thread-self/maps": MAPS_NATIVE})
    assert native == {"emulated": False, "evidence": []}
    by_maps = fp.detect_emulation("aarch64", PI5, {"/proc/thread-self/maps": MAPS_QEMU})
    assert by_maps["emulated"] and "/usr/bin/qemu-aarch64-static" in by_maps["evidence"][0]
    by_cpuinfo = fp.detect_emulation("aarch64", X86, {"/proc/thread-self/maps": None})
    assert by_cpuinfo["emulated"] and "x86" in by_cpuinfo["evidence"][0]
    assert not fp.detect_emulation("x86_64", X86, {"/proc/thread-self/maps": MAPS_NATIVE})["emulated"]


def test_this_process_emulated_exactly_when_it_is():
    # aarch64_check.sh runs the tests under qemu-user with QEMU_CPU set; the suite and real boards not
    emulated = bool(os.environ.get("QEMU_CPU") or os.environ.get("ATOMSIM_EMULATED"))
    assert fp.emulation()["emulated"] is emulated, fp.emulation()


def test_show_warns_of_emulation_and_names_engines_and_cores():
    d = {"cpu_model": "Cortex-A76", "arch": "aarch64", "cores": 2, "torch": "2.13.0",
         "emulation": {"emulated": True, "evidence": ["/proc/thread-self/maps maps the emulator /usr/bin/qemu-aarch64-static"]},
         "quantized_engines": {"torch-dynamic-int8": "qnnpack", "torchao-int8": "torchao"},
         "quantized_engine_default": "x86", "ops_affinity": [0, 1], "ops_thread_cpus": [1],
         "core_types": [{"name": "Cortex-A76", "cpus": [0, 1], "max_freq_khz": 2400000, "min_freq_khz": 1500000}]}
    lines = show.device_lines(d)
    assert lines[0].startswith("WARNING: measured under emulation") and "qemu-aarch64-static" in lines[0]
    assert "torch-dynamic-int8 qnnpack" in lines[1] and "default x86" in lines[1]
    assert "cores 0,1: Cortex-A76 1.50-2.40 GHz" in lines[2] and "affinity [0, 1]" in lines[3]
    assert not show.device_lines(dict(d, emulation={"emulated": False, "evidence": []}))[0].startswith("WARNING")


def test_ops_seen_per_backend():
    rounds = {"video-encoder/torch-dynamic-int8": [{"engine": "qnnpack", "affinity": [0, 1], "thread_cpus": [1]}, None],
              "decoder/torchao-int8": [{"engine": "torchao", "affinity": [0, 1], "thread_cpus": [0]}],
              "decoder/fp32": [{"engine": None, "affinity": [0, 1], "thread_cpus": [0, 1]}]}
    assert fp.ops_seen(rounds) == {"quantized_engines": {"torch-dynamic-int8": "qnnpack", "torchao-int8": "torchao"},
                                   "ops_affinity": [0, 1], "ops_thread_cpus": [0, 1]}


def test_ops_worker_reports_the_engine_it_ran_on_not_torchs_default(tiny_store):
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = "x86"   # torch's default, before atomsim switches
    try:
        job = {"preset": "tiny", "model": "bert-decoder", "quant": "torch-dynamic-int8", "store": str(tiny_store),
               "ops": {}, "threads": [1], "samples": 1, "memory": False}
        res = worker.job_ops(job)
    finally:
        torch.backends.quantized.engine = before
    assert res["engine"] == q.engine() != "x86"   # fbgemm here, qnnpack on ARM
    assert res["affinity"] and set(res["thread_cpus"]) <= set(range(256))
    assert q.engine_used("torchao-int8") == "torchao" and q.engine_used("fp32") is None
    assert models.BACKENDS  # every backend has an answer
    assert all(q.engine_used(b) or b == "fp32" for b in models.BACKENDS)
