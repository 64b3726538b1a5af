"""Synthetic profiles and scenarios for the simulator tests (no tests here besides a sanity check)."""
from __future__ import annotations

from atomsim.schema.profile import Profile, Stat
from atomsim.schema.scenario import scenario_from_mapping

GB = 10**9
QUANT = "fp32"


def op(lat, act=0, inputs=0, items=1, threads=None, shape=None):
    lats = threads or {1: lat}
    return {"latency_s": {str(t): Stat.point(v) for t, v in lats.items()}, "activation_peak_bytes": act,
            "input_bytes": inputs, "items": items, "shape": shape or {}}


def module(model, file_bytes, resident, cold, warm, ops, transient=0):
    return {"model": model, "quant": QUANT, "file_bytes": file_bytes, "resident_bytes": resident,
            "load": {"cold_s": Stat.point(cold), "warm_s": Stat.point(warm), "transient_bytes": [transient, transient]},
            "ops": ops}


def make_profile(encode=1.0, caption=1.0, bert_caption=None, embed=0.6, generate=3.0, load=None, warm=None,
                 resident=None, act=0, inputs=0, transient=0, storage_bw=1e9, corun=None, device="testdev",
                 encode_threads=None) -> Profile:
    load = load or {"video-encoder": 1.0, "decoder": 2.0, "bert-decoder": 1.5, "sentence-encoder": 0.5}
    warm = warm or {k: v / 4 for k, v in load.items()}
    resident = resident or {"video-encoder": 1 * GB // 2, "decoder": 1 * GB, "bert-decoder": GB // 4,
                            "sentence-encoder": GB // 20}
    files = {k: v // 2 for k, v in resident.items()}
    bert_caption = caption if bert_caption is None else bert_caption
    ops = {
        "video-encoder": {"encode": op(encode, act, inputs, threads=encode_threads)},
        "decoder": {"caption": op(caption, act, inputs), "generate": op(generate, act)},
        "bert-decoder": {"caption": op(bert_caption, act, inputs)},
        "sentence-encoder": {"embed": op(embed, act, 0, items=6)},
    }
    mods = {f"{m}/{QUANT}": module(m, files[m], resident[m], load[m], warm[m], ops[m], transient) for m in ops}
    return Profile.model_validate({
        "version": 1, "source": "measured", "device": {"name": device}, "baseline_rss_bytes": 100_000_000,
        "storage_read_bytes_per_s": storage_bw, "modules": mods, "corun": corun or [],
        "pipeline_ops_s": {"rank": 0.0, "assemble": 0.0},
    })


def make_scenario(task="assembly", clips=5, cores=8, ram_gb=16, policy="reuse-parallel", threads=None,
                  storage_mb_s=1000, device="testdev", page_cache="cold", queue_size=2):
    return scenario_from_mapping({
        "name": f"test-{task}", "device": {"name": device, "cores": cores, "ram_gb": ram_gb,
                                          "storage_read_mb_s": storage_mb_s},
        "workload": {"task": task, "clips": clips, "top_k": 5, "queue_size": queue_size},
        "models": {"preset": "tiny", "quant": QUANT}, "policy": policy,
        "threads": threads or {"main": 1, "encoder": 1, "decoder": 1}, "page_cache": page_cache,
    }, "test scenario")


def test_helpers_build():
    assert make_profile().modules and make_scenario().device.cores == 8
