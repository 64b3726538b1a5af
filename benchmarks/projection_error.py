"""How wrong is a projection to an unprofiled phone? Leave-one-module-out on the paper's three phones.

    python benchmarks/projection_error.py          # writes docs/projection.md and docs/projection.json

For every ordered pair (from, to) of profiles/paper-{pixel_5a,pixel_8a,galaxy_s23}.json and every
module held out in turn, the held-out module's figures (cold load, warm load, every op) are
projected from the source profile and compared with the target's published figures:
- roofline: the catalog's GFLOP/s and bandwidths (no calibration),
- one-factor: the naive baseline, one factor = the median target / source ratio of the other
  modules' figures,
- calibrated: factors by kind of work fitted on the other modules' figures (atomsim.report.fit),
- ratio: per-(model, op) ratios of the published profiles themselves, the held-out module's
  included: 0% by construction, a reference, not a projection.
Calibrated and one-factor use as calibration the target's profile without the held-out module.

Holding the module out is not all: profiles/build_published.py derives several figures of
different modules from one published number (A3: the reuse set's cold loads are one Table 3 figure
split by file bytes, warm loads follow from them; A6: both caption decoders carry the same caption
figure). Such a figure of another module is a fixed multiple of the held-out one. The strict run
also holds those out (`strict_pairs`, "held out by published number"); its figures with no figure
of their kind left fall back to one-factor.
"""
from __future__ import annotations

import itertools
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from atomsim.io import atomic_write_json, atomic_write_text  # noqa: E402
from atomsim.report import fit  # noqa: E402
from atomsim.report.project import project_profile  # noqa: E402
from atomsim.schema.profile import load_profile  # noqa: E402

PHONES = ("pixel_5a", "pixel_8a", "galaxy_s23")
METHODS = ("roofline", "one-factor", "calibrated", "ratio")
# the Table 3 numbers each figure of profiles/paper-*.json is built from (build_published.py A3, A4, A6)
NUMBERS = {
    ("video-encoder", "load"): {"load reuse"}, ("decoder", "load"): {"load reuse"},
    ("sentence-encoder", "load"): {"load reuse"}, ("bert-decoder", "load"): {"load reload", "load reuse"},
    ("video-encoder", "encode"): {"encode"}, ("decoder", "caption"): {"caption"},
    ("bert-decoder", "caption"): {"caption"}, ("decoder", "generate"): {"script"},
    ("sentence-encoder", "embed"): {"index"},
}


def numbers(figure: str) -> frozenset:
    key, what = figure.split(":", 1)
    model = key.split("/")[0]
    return frozenset(NUMBERS[(model, "load" if what.startswith("load.") else what.split("@")[0])])


def published(prof, key: str, what: str) -> float:
    mod = prof.modules[key]
    if what.startswith("load."):
        return getattr(mod.load, what.split(".")[1] + "_s").median
    op, t = what.split("@")
    return mod.ops[op].latency(int(t))


def without(prof, key: str):
    data = prof.model_dump(mode="json")
    data["modules"].pop(key)
    return type(prof).model_validate(data)


def leaked(src, cal, key: str) -> list:
    """Calibration figures built from the same published number(s) as a figure of the held-out module."""
    held = {numbers(f) for f in fit.figures(src) if f.startswith(key + ":")}
    held |= {numbers(f) for f in fit.figures(src, whole_cold=True) if f.startswith(key + ":")}
    return [f for f in set(fit.figures(cal)) | set(fit.figures(cal, True)) if numbers(f) in held]


def projected(method: str, src, dst, key: str, strict: bool) -> dict:
    """{figure 'load.cold'|'load.warm'|'<op>@<t>': projected seconds} of module `key` on `dst`."""
    if method in ("roofline", "ratio"):
        out = project_profile(src, dst.device["name"], method, published_dir=ROOT / "profiles").modules[key]
        figs = {"load.cold": out.load.cold_s.median, "load.warm": out.load.warm_s.median}
        return {**figs, **{f"{op}@{t}": st.median for op, o in out.ops.items() for t, st in o.latency_s.items()}}
    cal = without(dst, key)
    f = fit.fit(src, cal, by_kind=(method == "calibrated"), exclude=leaked(src, cal, key) if strict else ())
    return {name.split(":", 1)[1]: x for name, (x, _, _) in fit.project_times(src, f).items()
            if name.startswith(key + ":")}


def records(profiles: dict, strict: bool) -> list:
    rows = []
    for a, b in itertools.permutations(PHONES, 2):
        src, dst = profiles[a], profiles[b]
        for method in METHODS:
            if strict and method in ("roofline", "ratio"):
                continue
            for key in sorted(src.modules):
                for what, x in sorted(projected(method, src, dst, key, strict).items()):
                    pub = published(dst, key, what)
                    rows.append({"from": a, "to": b, "method": method, "held_out": key, "figure": f"{key}:{what}",
                                 "projected": round(x, 6), "published": round(pub, 6),
                                 "error_pct": round(100 * (x - pub) / pub, 3) or 0.0})
    return rows


def summary(rows: list) -> dict:
    """{method: {'pairs': {'a -> b': (median, worst)}, 'overall': (median, worst), 'n'}} of |error_pct|."""
    out = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        pairs = {}
        for a, b in itertools.permutations(PHONES, 2):
            errs = [abs(r["error_pct"]) for r in mine if (r["from"], r["to"]) == (a, b)]
            pairs[f"{a} -> {b}"] = (round(statistics.median(errs), 2), round(max(errs), 2))
        errs = [abs(r["error_pct"]) for r in mine]
        out[method] = {"pairs": pairs, "overall": (round(statistics.median(errs), 2), round(max(errs), 2)), "n": len(errs)}
    return out


def table(summ: dict) -> str:
    methods = list(summ)
    lines = ["| from -> to | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for pair in summ[methods[0]]["pairs"]:
        lines.append(f"| {pair} | " + " | ".join("%.1f%% / %.1f%%" % summ[m]["pairs"][pair] for m in methods) + " |")
    lines.append("| **all six pairs** | " + " | ".join("**%.1f%% / %.1f%%**" % summ[m]["overall"] for m in methods) + " |")
    return "\n".join(lines)


def worst_rows(rows: list, method: str, n: int = 8) -> str:
    mine = sorted((r for r in rows if r["method"] == method), key=lambda r: -abs(r["error_pct"]))[:n]
    lines = ["| from -> to | figure | projected s | published s | error |", "|---|---|---|---|---|"]
    lines += [f"| {r['from']} -> {r['to']} | {r['figure']} | {r['projected']:.3f} | {r['published']:.3f} | "
              f"{r['error_pct']:+.1f}% |" for r in mine]
    return "\n".join(lines)


def independent(rows: list) -> list:
    """Records of the figures no other module's figure is a copy of (encode, embed, generate, BERT loads)."""
    copies = {"load reuse", "caption"}
    return [r for r in rows if not (numbers(r["figure"]) & copies and len(numbers(r["figure"])) == 1)]


def markdown(rows, strict, s_all, s_strict, s_ind) -> str:
    cal, one = s_all["calibrated"]["overall"], s_all["one-factor"]["overall"]
    n = s_all["calibrated"]["n"]
    return f"""# Projection to an unprofiled phone: how wrong it is

Written by `python benchmarks/projection_error.py` (seconds; every figure in
[projection.json](projection.json)). For each ordered pair of the paper's three phones
(`profiles/paper-*.json`) and each of the four modules held out in turn, the held-out module's
figures (cold load, warm load, every op: {n // 6} figures per pair) are projected from the source
phone's profile and compared with the target's published figures. `calibrated` and `one-factor`
take as calibration the target's profile **without the held-out module**; `roofline` uses the
device catalog only; `ratio` is built from the published profiles themselves (the held-out
module's included), so its 0% is by construction: a reference, not a projection.

- **roofline**: the catalog's GFLOP/s, memory, storage and page-cache bandwidths.
- **one-factor** (the naive baseline): one factor for everything, the median target / source ratio
  of the calibration's figures.
- **calibrated** (`atomsim profile project --calibrate CAL`): factors by kind of work, each the median
  ratio of the calibration figures of that kind: compute (encode, embed), decode (caption),
  prefill+decode (generate: the geometric mean of the two), warm loads, and the storage part of
  cold loads (cold minus warm); a projected cold load is the projected warm load plus the
  projected storage part.

## Held out by module (the acceptance of issue 17)

Median / worst |error| of the held-out figures:

{table(s_all)}

Calibrated: median {cal[0]:.1f}%, worst {cal[1]:.1f}% (acceptance: <= 5% and <= 25%); the naive
one-factor baseline: {one[0]:.1f}% / {one[1]:.1f}%.

""" + hidden(rows, strict, s_strict, s_ind)


def hidden(rows, strict, s_strict, s_ind) -> str:
    """The part of the report on what the held-out-by-module median hides, and what is not measured."""
    cs, os_ = s_strict["calibrated"]["overall"], s_strict["one-factor"]["overall"]
    ci, oi = s_ind["calibrated"]["overall"], s_ind["one-factor"]["overall"]
    return f"""## What that median hides

The calibrated median is 0.0% because most held-out figures have an exact copy in another module.
`profiles/build_published.py` builds several figures of different modules from one published
number: the cold loads of the video encoder, the Llama decoder and MiniLM are one Table 3 figure
split by file bytes (A3), their warm loads follow from them (A4), and both caption decoders carry
the same caption figure (A6). Hold out the decoder, and the BERT decoder's caption, of the same
kind, predicts its caption exactly. No figure of the held-out module is in the calibration, but a
fixed multiple of it is: the 0.0% is the construction of the published profiles, not skill.

Two honest views of the same runs:

**Held out by published number** (`strict_pairs`): a calibration figure built from the same
published number(s) as a figure of the held-out module is held out too; a kind left with no
figure falls back to one-factor. Median / worst:

{table(s_strict)}

Calibrated {cs[0]:.1f}% / {cs[1]:.1f}%, one-factor {os_[0]:.1f}% / {os_[1]:.1f}%: **this does not meet
the acceptance.** The worst figures are captions: the paper's caption time falls far more from the
Pixel 5a to the Galaxy S23 (x0.64) than any other figure (x0.79-0.92), and once no caption
figure is left nothing in the calibration predicts it.

**Held out by module, only the figures with no copy elsewhere** (encode, embed, generate, the BERT
decoder's loads):

{table(s_ind)}

Calibrated {ci[0]:.1f}% / {ci[1]:.1f}% against one-factor {oi[0]:.1f}% / {oi[1]:.1f}%: on independent
figures fitting by kind is about as good as one factor. Encode and embed are both compute-bound
encoders, yet their ratios between two phones differ by up to 19% (x0.73 against x0.87 from the
Pixel 5a to the Pixel 8a): a calibration of one encoder predicts the other no better than that.

## Worst figures, calibrated, held out by module

{worst_rows(rows, "calibrated")}

## Worst figures, calibrated, held out by published number

{worst_rows(strict, "calibrated")}

## What this does not measure

- The paper publishes one number per stage; each figure here is a point (n = 1, no spread), and
  three phones give six pairs, on which the kinds were chosen: the method was designed knowing
  these data, so these errors are optimistic for a fourth phone.
- `atomsim calibrate` (reference kernels: GEMM, GEMV, storage and page-cache reads) could not be
  run on the paper's phones: no error is measured for a kernel calibration, only for a
  calibration with modules measured on the target.
- Warm loads are not published (A4: cold minus file bytes over the catalog's storage
  bandwidth), so the storage part of a cold load scales exactly by the catalog here.
"""


def main() -> int:
    profiles = {p: load_profile(ROOT / "profiles" / f"paper-{p}.json") for p in PHONES}
    rows, strict = records(profiles, False), records(profiles, True)
    s_all, s_strict, s_ind = summary(rows), summary(strict), summary(independent(rows))
    for name, s in (("held out by module", s_all), ("held out by published number", s_strict),
                    ("held out by module, independent figures only", s_ind)):
        print(f"{name}: median / worst |error|")
        print(table(s))
    atomic_write_json(ROOT / "docs" / "projection.json", {
        "pairs": rows, "strict_pairs": strict,
        "summary": {"held_out_by_module": s_all, "held_out_by_published_number": s_strict,
                    "independent_figures": s_ind},
        "how": __doc__.strip().split("\n\n", 2)[2]})
    atomic_write_text(ROOT / "docs" / "projection.md", markdown(rows, strict, s_all, s_strict, s_ind))
    cal = s_all["calibrated"]["overall"]
    ok = cal[0] <= 5 and cal[1] <= 25
    print(f"calibrated, held out by module: median {cal[0]}%, worst {cal[1]}% -> {'PASS' if ok else 'FAIL'} (<= 5%, <= 25%)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
