"""A loaded Hugging Face checkpoint module (`HFModule`) and the weight surgery its int8 backend needs.

`HFModule` has the duck-typed interface of `atomsim.models.Module` (docs/internals.md): `name`,
`model`, `quant`, `path`, `params`, `net`, the ops of its kind, `example_inputs(op, ...)`, `free()`.
Its ops differ from the zoo's in one respect: `caption(frames)` takes the clip's frames (the
captioner has its own vision encoder) and returns the caption text.

Frames arrive as the runner makes them (`atomsim.run.video.decode_clip`): float [F, 3, S, S],
normalized with CLIP's mean and std. The vision ops undo that normalization, apply the
checkpoint's own (`image_mean` / `image_std` of its preprocessor_config.json, when it normalizes)
and resize to the model's image size with bilinear interpolation when S differs.
"""
from __future__ import annotations

import contextlib
import gc
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelStoreError
from ..procfs import malloc_trim

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)   # = atomsim.run.video's (no av import here)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_WORDS = ("clip", "scene", "person", "city", "night", "gift", "video", "order", "street", "camera")


@contextlib.contextmanager
def quiet_transformers():
    """transformers' progress bars and warnings (to stderr) off during the block, then restored.
    Process-wide state: callers run one load or build at a time (the runner's load lock)."""
    from transformers.utils import logging as tlog
    verbosity, bars = tlog.get_verbosity(), tlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.set_verbosity(verbosity)
        if bars:
            tlog.enable_progress_bar()


# ---------------------------------------------------------------- weight surgery (build and load)

def conv1d_to_linear(net: nn.Module) -> int:
    """Replace every transformers `Conv1D` (GPT-2's projections: y = x @ W + b, W [in, out]) by an
    equivalent nn.Linear (weight W.T), so that dynamic int8 quantizes them too. Meta parameters
    stay meta (the load path: the state dict fills them). Returns the number replaced."""
    from transformers.pytorch_utils import Conv1D
    n = 0
    for mod in list(net.modules()):
        for name, child in list(mod._modules.items()):
            if not isinstance(child, Conv1D):
                continue
            w = child.weight
            lin = nn.Linear(child.nx, child.nf, bias=child.bias is not None, device="meta")
            if w.device.type != "meta":
                lin.weight = nn.Parameter(w.detach().t().contiguous(), requires_grad=False)
                if child.bias is not None:
                    lin.bias = nn.Parameter(child.bias.detach().clone(), requires_grad=False)
            mod._modules[name] = lin
            n += 1
    return n


def untie_linears(net: nn.Module) -> None:
    """Give each nn.Linear whose weight is shared (a tied lm head) a copy of its own, so that it is
    quantized alone; the embedding it was tied to stays float and shared tables stay shared
    (T5's three embeddings are one tensor, saved once). quant.py's `_untie` would copy those too."""
    count: dict = {}
    for mod in net.modules():
        for p in mod._parameters.values():
            if p is not None:
                count[id(p)] = count.get(id(p), 0) + 1
    for mod in net.modules():
        if type(mod) is nn.Linear and count.get(id(mod.weight), 0) > 1:
            count[id(mod.weight)] -= 1
            mod.weight = nn.Parameter(mod.weight.detach().clone(), requires_grad=False)


def quantize_int8(net: nn.Module) -> tuple[nn.Module, bool]:
    """`torch-dynamic-int8` of a filled float model, as quant.py's path (its engine choice,
    `quantize_dynamic({nn.Linear}, qint8)`), after GPT-2's Conv1D became Linear and tied lm heads
    were untied. Build time only. (model, whether any Conv1D was replaced: the load must too)."""
    from . import quant as q
    conv1d = conv1d_to_linear(net) > 0
    untie_linears(net)
    q.set_engine()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(net, {nn.Linear}, dtype=torch.qint8, inplace=True), conv1d


def retie(net: nn.Module, tied: dict) -> None:
    """Point every parameter the fp32 file saved once (`tied`: name -> name kept) at the kept one."""
    for name, src in tied.items():
        owner, _, attr = name.rpartition(".")
        mod = net.get_submodule(owner) if owner else net
        src_owner, _, src_attr = src.rpartition(".")
        src_mod = net.get_submodule(src_owner) if src_owner else net
        if attr in mod._parameters:
            mod._parameters[attr] = src_mod._parameters[src_attr]
        elif attr in mod._buffers:
            mod._buffers[attr] = src_mod._buffers.get(src_attr, src_mod._parameters.get(src_attr))


# ---------------------------------------------------------------- frames

def image_settings(d: Path, config) -> dict:
    """Image size, mean and std of a vision checkpoint: size from its config (top level, `encoder`
    or `vision_config`), else from preprocessor_config.json; mean/std from that file (CLIP's
    when the processor does not normalize or the file is absent)."""
    size = None
    for c in (config, getattr(config, "encoder", None), getattr(config, "vision_config", None)):
        if c is not None and isinstance(getattr(c, "image_size", None), int):
            size = c.image_size
            break
    proc = {}
    p = d / "preprocessor_config.json"
    if p.exists():
        proc = json.loads(p.read_text())
    if size is None and isinstance(proc.get("size"), dict):
        s = proc["size"]
        size = s.get("height") or s.get("shortest_edge")
    normalize = proc.get("do_normalize", True) and "image_mean" in proc
    return {"size": size, "mean": tuple(proc["image_mean"]) if normalize else CLIP_MEAN,
            "std": tuple(proc["image_std"]) if normalize else CLIP_STD}


def to_pixels(frames: torch.Tensor, settings: dict) -> torch.Tensor:
    """CLIP-normalized frames [F, 3, S, S] -> the checkpoint's pixel values [F, 3, size, size]."""
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be [F, 3, H, W], got {list(frames.shape)}")
    x = frames.float()
    if settings["mean"] != CLIP_MEAN or settings["std"] != CLIP_STD:
        raw = x * torch.tensor(CLIP_STD).view(1, 3, 1, 1) + torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        x = (raw - torch.tensor(settings["mean"]).view(1, 3, 1, 1)) / torch.tensor(settings["std"]).view(1, 3, 1, 1)
    size = settings["size"]
    if size and tuple(x.shape[-2:]) != (size, size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


# ---------------------------------------------------------------- load from the store

def read_state(wfile: Path, quant: str, fix: str) -> dict:
    """The saved state dict, read into process memory (safetensors by pread; the int8 pickle as
    store.read_int8_state reads the zoo's), or ModelStoreError naming the file and `fix`."""
    from .store import read_int8_state
    try:
        if quant == "fp32":
            from safetensors.torch import load_file
            return load_file(str(wfile), backend="pread")   # read into memory, as the zoo's loads
        return read_int8_state(wfile)
    except Exception as e:
        raise ModelStoreError(f"weight file {wfile} is corrupt or unreadable ({type(e).__name__}: "
                              f"{str(e)[:200]}); {fix}") from e


def load_net(d: Path, config, cls, wfile: Path, quant: str, meta: dict, eager: bool, fix: str):
    """The model `cls(config)` of store directory `d`: built on the meta device (buffers real), int8
    Linears as 1x1 placeholders (quant.swap_dynamic_structure), then filled from the state dict in
    `wfile` by assignment, so the weights are held once after the load (and, int8, little more during it)."""
    from . import quant as q
    from .store import touch
    from .zoo import meta_params
    with meta_params(), quiet_transformers():
        net = cls(config)
    if quant == "torch-dynamic-int8":
        if meta.get("conv1d_to_linear"):
            conv1d_to_linear(net)
        q.swap_dynamic_structure(net)
    try:
        if quant == "torch-dynamic-int8":   # read tensor by tensor, as the zoo's (store.fill)
            from .tensorwise import load_torch_zip
            load_torch_zip(net, wfile)
        else:
            net.load_state_dict(read_state(wfile, quant, fix), strict=False, assign=True)
    except ModelStoreError:
        raise
    except Exception as e:
        from .tensorwise import Mismatch
        what = "does not fit " + cls.__name__ if isinstance(e, Mismatch) or quant == "fp32" else \
            "is corrupt or unreadable"
        raise ModelStoreError(f"weight file {wfile} {what} ({type(e).__name__}: {str(e)[:200]}); {fix}") from e
    if quant == "fp32":
        retie(net, meta.get("tied") or {})
    left = [n for n, p in net.named_parameters() if p.device.type == "meta"]
    left += [n for n, b in net.named_buffers() if b.device.type == "meta"]
    if quant == "torch-dynamic-int8":
        left += q.check_dynamic_shapes(net)
    if left:
        raise ModelStoreError(f"weight file {wfile} lacks tensors {left[:3]}...; {fix}")
    if eager:
        touch(net)
    return net.eval()


def side_objects(d: Path, kind: str, config):
    """(tokenizer, image settings) from the store directory: the tokenizer of every kind but the
    vision encoder, the image size/mean/std of the vision kinds."""
    tok = image = None
    if kind != "vision-encoder":
        from transformers import AutoTokenizer
        try:
            tok = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
        except Exception as e:
            raise ModelStoreError(f"{d}: no usable tokenizer ({type(e).__name__}: {str(e)[:200]}); the "
                                  f"checkpoint directory must hold its tokenizer files") from e
    if kind in ("vision-encoder", "vision2seq"):
        image = image_settings(d, config)
    return tok, image


# ---------------------------------------------------------------- the module

class HFModule:
    """A checkpoint loaded from the store: `net` (the transformers model, eval mode), its tokenizer,
    the ops of its kind (`hf.KIND_OPS`). `model` is the source directory (a string), `kind` its
    kind, `name` "<directory name>/<quant>", `path` the store directory, `meta` its atomsim.json."""

    preset = "hf"

    def __init__(self, net, kind: str, quant: str, meta: dict, path: Path, tokenizer=None, image=None):
        self.net, self.kind, self.quant, self.meta = net, kind, quant, meta
        self.path = Path(path)
        self.model = str(meta.get("source", ""))
        self.name = f"{Path(self.model).name or kind}/{quant}"
        self.tokenizer, self.image = tokenizer, image

    def __repr__(self):
        return f"<atomsim HFModule {self.kind}:{self.name}{' (freed)' if self.net is None else ''}>"

    @property
    def params(self) -> int:
        return int(self.meta.get("params") or 0)

    def _need(self, op: str) -> None:
        from ..schema.ops import KINDS as KIND_OPS   # the op table (hf.KIND_OPS is this)
        if self.net is None:
            raise RuntimeError(f"{self.name} was freed")
        if op not in KIND_OPS[self.kind]:
            raise AttributeError(f"{self.kind} module has no op {op!r}; ops: {', '.join(KIND_OPS[self.kind])}")

    def _max_positions(self) -> int | None:
        c = self.net.config
        for key in ("max_position_embeddings", "n_positions"):
            if isinstance(getattr(c, key, None), int):
                return getattr(c, key)
        return None

    @torch.inference_mode()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Features of a clip: the pooled output of each frame, averaged over frames -> [D]."""
        self._need("encode")
        out = self.net(pixel_values=to_pixels(frames, self.image))
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            hid = out.last_hidden_state
            pooled = hid.mean(dim=tuple(range(1, hid.dim() - 1))) if hid.dim() > 2 else hid
        return pooled.float().mean(0)

    @torch.inference_mode()
    def caption(self, frames: torch.Tensor, beam: int = 4, tokens: int = 23) -> str:
        """The caption of the clip's middle frame: beam search of `beam` beams, exactly `tokens`
        new tokens (min = max, so the cost does not depend on the weights), decoded to text."""
        self._need("caption")
        mid = frames.shape[0] // 2
        px = to_pixels(frames[mid:mid + 1], self.image)
        out = self.net.generate(pixel_values=px, num_beams=beam, do_sample=False, max_new_tokens=tokens,
                                min_new_tokens=tokens, num_return_sequences=1, early_stopping=False,
                                length_penalty=1.0, **self._token_ids())
        return self.tokenizer.decode(out[0].tolist(), skip_special_tokens=True).strip()

    def _token_ids(self) -> dict:
        g = getattr(self.net, "generation_config", None)
        pad = getattr(g, "pad_token_id", None)
        if pad is None:
            tok = self.tokenizer
            pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return {"pad_token_id": pad}

    @torch.inference_mode()
    def generate(self, prompt: str, tokens: int = 64) -> str:
        """Greedy continuation (causal LM) or output (seq2seq) of `prompt`: exactly `tokens` new
        tokens; the prompt is cut from the left to fit the model's positions."""
        self._need("generate")
        ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"]
        limit = self._max_positions()
        if limit and self.kind == "causal-lm" and ids.shape[1] + tokens > limit:
            ids = ids[:, -(limit - tokens):]
        elif limit and ids.shape[1] > limit:
            ids = ids[:, -limit:]
        out = self.net.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, num_beams=1,
                                max_new_tokens=tokens, min_new_tokens=tokens, **self._token_ids())
        new = out[0, ids.shape[1]:] if self.kind == "causal-lm" else out[0]
        return self.tokenizer.decode(new.tolist(), skip_special_tokens=True).strip()

    @torch.inference_mode()
    def embed(self, texts) -> torch.Tensor:
        """[N, D] embeddings of `texts`: mean of the last hidden states over the attention mask,
        L2-normalized (as the zoo's MiniLM)."""
        from .zoo import mean_pool
        self._need("embed")
        limit = min(x for x in (self._max_positions(), self.tokenizer.model_max_length, 512) if x)
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=limit, return_tensors="pt")
        enc = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        return mean_pool(self.net(**enc).last_hidden_state.float(), enc["attention_mask"])

    def _prompt(self, n_tokens: int) -> str:
        """Text of about `n_tokens` tokens of this tokenizer (words cycled, cut at n_tokens ids)."""
        text = " ".join(_WORDS[i % len(_WORDS)] for i in range(max(n_tokens, 1)))
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][:max(n_tokens - 1, 1)]
        return self.tokenizer.decode(ids)

    def example_inputs(self, op, frames=6, frame_size=224, items=5, prompt_tokens=128, beam=4, tokens=23,
                       **_ignored) -> tuple:
        """Real-shaped positional inputs of `op` (call as getattr(module, op)(*inputs))."""
        self._need(op)
        g = torch.Generator().manual_seed(0)
        if op in ("encode", "caption"):
            x = torch.randn(frames, 3, frame_size, frame_size, generator=g)
            return (x,) if op == "encode" else (x, beam, tokens)
        if op == "generate":
            return (self._prompt(prompt_tokens), tokens)
        return ([self._prompt(tokens + 1 + i % 3) for i in range(items)],)

    def free(self) -> None:
        """Drop every reference to the weights and the tokenizer, collect, and trim the heap."""
        self.net = None
        self.tokenizer = None
        gc.collect()
        malloc_trim()
