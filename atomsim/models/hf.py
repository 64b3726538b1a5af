"""Modules from anywhere: a user's Hugging Face checkpoint directory as a pipeline module.

A pipeline names a checkpoint directory and its kind (`captioner: {hf: ckpt/vit-gpt2, kind:
vision2seq}`). The kind decides which transformers Auto mapping builds the model and which op the
module has (`KIND_OPS`):

| kind | transformers mapping (Auto class) | op |
|---|---|---|
| vision-encoder | MODEL_FOR_IMAGE_MAPPING (AutoModel's image models) | encode(frames) -> [D] |
| vision2seq | MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING (AutoModelForImageTextToText) * | caption(frames) -> str |
| causal-lm | MODEL_FOR_CAUSAL_LM_MAPPING (AutoModelForCausalLM) | generate(prompt) -> str |
| seq2seq-lm | MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING (AutoModelForSeq2SeqLM) | generate(prompt) -> str |
| text-encoder | MODEL_FOR_TEXT_ENCODING_MAPPING (AutoModelForTextEncoding) | embed(texts) -> [N, D] |

* only the classes whose main input is pixel_values (VisionEncoderDecoderModel, BLIP), which caption
without a text prompt. transformers 5 has no MODEL_FOR_VISION_2_SEQ mapping: vision-encoder-decoder
is in the image-text-to-text one.

Store layout: `<store>/hf/<content_hash[:16]>/<kind>/<quant>/` with `model.safetensors` (fp32) or
`model.pt` (torch-dynamic-int8, `torch.save` of the state dict, as the zoo's), the source's config, tokenizer
and processor files, and `atomsim.json` (source, content hash, kind, quant, params, bytes and sha256
of the weight file). The content hash covers every file of the source directory, so an edited
checkpoint gets a new directory and an unchanged one is never rebuilt. The kind is a level of
its own because one checkpoint may serve two kinds with different weights saved (a T5 directory
is a seq2seq-lm, T5ForConditionalGeneration, and a text-encoder, T5EncoderModel). Reading a large
checkpoint for its hash at every load would cost a full read: the hash is kept in
`<store>/hf/.hashes/`, keyed by the source's path and every file's (name, size, mtime), and
recomputed when any differs. A load therefore needs the source directory, unchanged or not.

Loads build on the meta device with `zoo.meta_params`, which patches nn.Module process-wide:
like `models.load`, one load at a time (the runner's load lock).
"""
from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
from pathlib import Path

from ..errors import ConfigError, ModelStoreError, valid_names
from ..io import atomic_write_json
from ..procfs import malloc_trim
from ..schema.ops import HF_KINDS, KINDS as OP_KINDS

__all__ = ["KINDS", "KIND_OPS", "QUANTS", "HFModule", "content_hash", "check_kind", "build", "weight_files",
           "load", "describe", "store_dir"]

KINDS = HF_KINDS                                   # the op table's (schema/ops.py)
KIND_OPS = {k: OP_KINDS[k] for k in KINDS}
QUANTS = ("fp32", "torch-dynamic-int8")
FORMAT = 1


def __getattr__(name):   # HFModule without importing torch with this module (KINDS need no torch)
    if name == "HFModule":
        from .hf_ops import HFModule
        return HFModule
    raise AttributeError(name)


def quiet_transformers():
    """hf_ops.quiet_transformers (imported when called: it imports torch)."""
    from .hf_ops import quiet_transformers as quiet
    return quiet()


# kind -> (mapping in transformers.models.auto.modeling_auto, the Auto class it belongs to)
MAPPINGS = {"vision-encoder": ("MODEL_FOR_IMAGE_MAPPING", "AutoModel (image models)"),
            "vision2seq": ("MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING", "AutoModelForImageTextToText"),
            "causal-lm": ("MODEL_FOR_CAUSAL_LM_MAPPING", "AutoModelForCausalLM"),
            "seq2seq-lm": ("MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING", "AutoModelForSeq2SeqLM"),
            "text-encoder": ("MODEL_FOR_TEXT_ENCODING_MAPPING", "AutoModelForTextEncoding")}
WEIGHT_NAMES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf",
                    ".index.json")


# ---------------------------------------------------------------- content hash

def _files(src: Path) -> list[tuple[str, Path]]:
    """(relative name, path) of every file under `src`, sorted; hidden names (.git, .cache) skipped;
    symbolic links to files are followed (a hub cache's snapshot directory is links to blobs)."""
    out = []
    for root, dirs, names in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in names:
            p = Path(root) / n
            if not n.startswith(".") and p.is_file():
                out.append((p.relative_to(src).as_posix(), p))
    return sorted(out)


def content_hash(src_dir) -> str:
    """sha256 (hex) over the directory's files: each file's relative name, size and bytes, sorted."""
    h = hashlib.sha256()
    for rel, p in _files(Path(src_dir)):
        h.update(rel.encode() + b"\0" + p.stat().st_size.to_bytes(8, "little"))
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def _cached_hash(src: Path, store: Path) -> str:
    """content_hash(src), reused from the store's cache while no file's name, size or mtime changed."""
    src = src.resolve()
    if not src.is_dir():
        raise ConfigError(f"{src}: no such checkpoint directory")
    stat = [[rel, p.stat().st_size, p.stat().st_mtime_ns] for rel, p in _files(src)]
    cache = store / "hf" / ".hashes" / (hashlib.sha256(str(src).encode()).hexdigest()[:32] + ".json")
    try:
        old = json.loads(cache.read_text())
        if old.get("src") == str(src) and old.get("stat") == stat:
            return old["hash"]
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    h = content_hash(src)
    try:
        atomic_write_json(cache, {"src": str(src), "stat": stat, "hash": h})
    except OSError:   # a read-only store: the hash is just not kept
        pass
    return h


def _store(store) -> Path:
    from .specs import default_store
    return Path(store) if store is not None else default_store()


def store_dir(src_dir, kind: str, quant: str, store=None) -> Path:
    """`<store>/hf/<content_hash[:16]>/<kind>/<quant>` of a source directory (nothing is built)."""
    st = _store(store)
    return st / "hf" / _cached_hash(Path(src_dir), st)[:16] / kind / quant


# ---------------------------------------------------------------- kinds

def _auto_config(d: Path, kind: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoConfig
    try:
        return AutoConfig.from_pretrained(str(d), local_files_only=True)
    except Exception as e:   # unknown model_type, bad JSON: transformers' reason, on one line
        raise ConfigError(f"{d}: field 'kind' ({kind}): config.json cannot be read by transformers: "
                          f"{' '.join(str(e).split())[:300]}") from None


def _mapping(kind: str):
    from transformers.models.auto import modeling_auto
    return getattr(modeling_auto, MAPPINGS[kind][0])


def kinds_of(config) -> list[str]:
    """The kinds whose mapping builds a model of this config's type."""
    return [k for k in KINDS if type(config) in _mapping(k)]


def model_class(config, kind: str):
    """The transformers class that kind `kind` builds for `config` (the Auto class's choice)."""
    return _mapping(kind)[type(config)]


def _checkpoint_keys(d: Path) -> set[str] | None:
    """Tensor names in the checkpoint's weight files (headers and index only), None if unreadable."""
    try:
        if (d / "model.safetensors").exists():
            from safetensors import safe_open
            with safe_open(str(d / "model.safetensors"), framework="pt") as f:
                return set(f.keys())
        for n in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
            if (d / n).exists():
                return set(json.loads((d / n).read_text())["weight_map"])
        import torch
        return set(torch.load(str(d / "pytorch_model.bin"), map_location="meta", weights_only=True, mmap=True))
    except Exception:
        return None


def _missing_head(d: Path, config, cls) -> list[str]:
    """Parameters of `cls` outside its base model (its head) that are neither tied to another
    parameter nor in the checkpoint: all of them when the checkpoint has no such head."""
    if any(a == cls.__name__ for a in (getattr(config, "architectures", None) or [])):
        return []
    keys = _checkpoint_keys(d)
    if keys is None:
        return []
    from .zoo import meta_params
    with meta_params(), quiet_transformers():
        net = cls(config)
    prefix = getattr(net, "base_model_prefix", "") or ""
    head = [n for n, _ in net.named_parameters() if not (prefix and n.startswith(prefix + "."))]
    tied = set(getattr(net, "all_tied_weights_keys", None) or {})
    head = [n for n in head if n not in tied]
    present = [n for n in head if n in keys]
    return [] if present else head


def check_kind(src_dir, kind: str) -> None:
    """ConfigError (one line, naming the directory and the field 'kind') unless `src_dir` is a
    checkpoint directory whose architecture the kind's transformers mapping builds, with weights
    (and, for the generating kinds, the weights of its head)."""
    d = Path(src_dir)
    if kind not in KINDS:
        raise ConfigError(f"{d}: field 'kind': {valid_names('kind', kind, KINDS)}")
    if not d.is_dir():
        raise ConfigError(f"{d}: field 'kind' ({kind}): no such checkpoint directory")
    if not (d / "config.json").is_file():
        raise ConfigError(f"{d}: field 'kind' ({kind}): not a checkpoint directory (no config.json)")
    config = _auto_config(d, kind)
    auto = MAPPINGS[kind][1]
    if type(config) not in _mapping(kind):
        fits = kinds_of(config)
        hint = f"; kinds whose mapping has it: {', '.join(fits)}" if fits else ""
        raise ConfigError(f"{d}: field 'kind' ({kind}): model_type {config.model_type!r} is not a {kind} "
                          f"architecture (transformers' {auto} does not build it){hint}")
    cls = model_class(config, kind)
    if kind == "vision2seq" and getattr(cls, "main_input_name", None) != "pixel_values":
        raise ConfigError(f"{d}: field 'kind' ({kind}): {cls.__name__} needs a text prompt with the image; "
                          f"atomsim captions from pixel values alone (VisionEncoderDecoderModel, BLIP)")
    if not any((d / n).is_file() for n in WEIGHT_NAMES):
        raise ConfigError(f"{d}: field 'kind' ({kind}): no weights (none of {', '.join(WEIGHT_NAMES)})")
    if kind in ("vision2seq", "causal-lm", "seq2seq-lm"):
        missing = _missing_head(d, config, cls)
        if missing:
            saved = ", ".join(getattr(config, "architectures", None) or ["?"])
            raise ConfigError(f"{d}: field 'kind' ({kind}): the checkpoint ({saved}) has no weights for the head "
                              f"of {cls.__name__} ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")


# ---------------------------------------------------------------- build

def _weight_name(quant: str) -> str:
    return "model.safetensors" if quant == "fp32" else "model.pt"


def _check_quant(quant: str) -> None:
    if quant not in QUANTS:
        raise ConfigError(valid_names("backend of a Hugging Face module", quant, QUANTS))


def _copy_side_files(src: Path, dst: Path) -> None:
    """Config, generation config, tokenizer and processor files: every top-level file of the
    source that is not a weight file."""
    for p in sorted(src.iterdir()):
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(_WEIGHT_SUFFIXES):
            shutil.copy2(p, dst / p.name)


def _is_built(d: Path, h: str) -> bool:
    from .store import is_complete
    if not is_complete(d):
        return False
    try:
        return json.loads((d / "atomsim.json").read_text()).get("content_hash") == h
    except (OSError, ValueError):
        return False


def build(src_dir, kind: str, quant: str, store=None, progress=None) -> Path:
    """Quantize the checkpoint `src_dir` of `kind` into `<store>/hf/<hash16>/<kind>/<quant>/` (atomic: a
    temporary directory beside it, renamed when complete). Nothing is done when that directory is
    complete for the source's current content hash. Returns the directory."""
    import torch
    _check_quant(quant)
    check_kind(src_dir, kind)
    from .store import _save_weights, check_writable, staged
    src = Path(src_dir).resolve()
    st = check_writable(_store(store))
    h = _cached_hash(src, st)
    final = st / "hf" / h[:16] / kind / quant
    if _is_built(final, h):
        return final
    say = progress or (lambda msg: None)
    say(f"{src.name}/{quant}: read {src}")
    cls = model_class(_auto_config(src, kind), kind)
    try:
        with quiet_transformers():
            net = cls.from_pretrained(str(src), local_files_only=True, dtype=torch.float32).eval()
    except Exception as e:
        raise ModelStoreError(f"cannot load checkpoint directory {src}: {type(e).__name__}: "
                              f"{' '.join(str(e).split())[:200]}") from e
    params = sum(p.numel() for p in net.parameters())
    conv1d = False
    if quant == "torch-dynamic-int8":
        say(f"{src.name}/{quant}: quantize")
        from .hf_ops import quantize_int8
        net, conv1d = quantize_int8(net)
    try:
        with staged(final, quant) as tmp:
            wname = _weight_name(quant)
            tied = _save_weights(net, quant, tmp / wname)
            _copy_side_files(src, tmp)
            atomic_write_json(tmp / "atomsim.json", _meta(src, h, kind, quant, cls, params, tied, conv1d, tmp / wname))
    finally:
        del net
        gc.collect()
        malloc_trim()
    say(f"{src.name}/{quant}: done")
    return final


def _meta(src, h, kind, quant, cls, params, tied, conv1d, wfile: Path) -> dict:
    import torch
    import transformers

    from .store import sha256
    return {"format": FORMAT, "source": str(src), "content_hash": h, "kind": kind, "quant": quant,
            "architecture": cls.__name__, "params": params, "tied": tied, "conv1d_to_linear": conv1d,
            "engine": torch.backends.quantized.engine if quant == "torch-dynamic-int8" else None,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            "files": {wfile.name: {"bytes": wfile.stat().st_size, "sha256": sha256(wfile)}}}


def weight_files(src_dir, kind: str, quant: str, store=None) -> list[Path]:
    """The files a load of (src_dir, kind, quant) reads its weights from (they may not be built yet)."""
    _check_quant(quant)
    if kind not in KINDS:
        raise ConfigError(f"{src_dir}: field 'kind': {valid_names('kind', kind, KINDS)}")
    return [store_dir(src_dir, kind, quant, store) / _weight_name(quant)]


# ---------------------------------------------------------------- load

def load(src_dir, kind: str, quant: str, store=None, verify: bool = False, eager: bool = True):
    """Load (src_dir, kind, quant) from the store, building it first when absent; never re-quantizes
    a built entry. Config, tokenizer and processor files come from the store directory (copied from
    the source at build), never from a hub. `eager` reads every weight page before returning;
    `verify` checks the weight file's sha256. Collects and trims the heap before returning.
    Returns an `HFModule` (hf_ops.py)."""
    from .hf_ops import HFModule, load_net, side_objects
    from .store import sha256
    _check_quant(quant)
    st = _store(store)
    h = _cached_hash(Path(src_dir), st)
    d = st / "hf" / h[:16] / kind / quant
    fix = f"delete {d} and load again to rebuild it"
    if not _is_built(d, h):
        d = build(src_dir, kind, quant, store=store)   # checks the kind first
    meta = json.loads((d / "atomsim.json").read_text())
    wfile = d / _weight_name(quant)
    if verify and sha256(wfile) != meta["files"][wfile.name]["sha256"]:
        raise ModelStoreError(f"weight file {wfile} is corrupt (sha256 mismatch); {fix}")
    config = _auto_config(d, kind)
    net = load_net(d, config, model_class(config, kind), d / _weight_name(quant), quant, meta, eager, fix)
    tok, image = side_objects(d, kind, net.config)
    gc.collect()
    malloc_trim()
    return HFModule(net, kind, quant, meta, d, tokenizer=tok, image=image)


def describe(src_dir, kind: str) -> dict:
    """For listings: architecture, parameter count and estimated file bytes per backend (from the
    shapes, on the meta device; no weights are read)."""
    from . import estimate_file_bytes
    from .hf_ops import conv1d_to_linear
    from .zoo import meta_params
    check_kind(src_dir, kind)
    d = Path(src_dir)
    config = _auto_config(d, kind)
    cls = model_class(config, kind)
    with meta_params(), quiet_transformers():
        net = cls(config)
    params = sum(p.numel() for p in net.parameters())
    conv1d_to_linear(net)
    est = estimate_file_bytes(net)
    return {"source": str(d), "kind": kind, "model_type": config.model_type, "architecture": cls.__name__,
            "ops": list(KIND_OPS[kind]), "params": params,
            "file_bytes": {q: est[q] for q in QUANTS}}
