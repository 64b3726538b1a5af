"""ExecuTorch backends: the zoo's modules as `.pte` programs lowered to XNNPACK (ARM and x86 CPUs).

- `executorch-xnnpack`: fp32.
- `executorch-xnnpack-int8`: 8-bit dynamic activations, 8-bit per-channel weights, through
  ExecuTorch's own `XNNPACKQuantizer` (`get_symmetric_quantization_config(is_per_channel=True,
  is_dynamic=True)`, without its scalar pass: `_quantizer`) in torchao's pt2e flow (prepare_pt2e /
  convert_pt2e), lowered by the dynamically quantized partitioner then the XNNPACK one: the quantizer of the
  backend that runs the program annotates exactly the patterns its partitioner lowers to XNNPACK's
  dynamically quantized GEMMs (QD8-F32-QC8W), where torchao's tensor-subclass configs are not
  lowered by the XNNPACK partitioner.

Programs (method `forward`; every shape static but the decoders' sequence lengths):
- video-encoder: frames [F, 3, S, S] -> feature vector (one forward).
- sentence-encoder: input_ids, attention_mask [items, L] -> L2-normalized mean-pooled embeddings
  (tokenizing stays in Python; texts padded to L tokens).
- decoder (Llama): two methods over transformers' `TorchExportableModuleWithStaticCache` (a
  static KV cache held in the program as mutable buffers), T dynamic: `forward`, batch 1,
  inputs_embeds [1, T, H] and cache_position [T] (generate: greedy); `beam`, batch = the beam
  width, inputs_embeds [beam, T, H], cache_position [T] and `parents` [beam], the cache row each
  beam continues, by which the program reorders its cache before the step (`_BeamStep`). Prefill
  is one call with the prompt, each decode step a call with one token per row; the token loop
  and the beam search stay in Python (`greedy`, `beam_search`). The two methods share the
  weights in the file (tiny fp32: 0.62 MB with `forward` alone, 0.68 MB with both) and, packed,
  in memory (XNNPACK's weight cache: executorch_weights).
- bert-decoder: one beam step without a KV cache (`_BertStep`): input_ids [beam, T] (T dynamic,
  up to BERT_MAX_TOKENS) and the clip's features -> log-probabilities of the next token [beam,
  vocab]; the beam search stays in Python and each step runs the whole prefix again (transformers'
  ExecuTorch integration has no static wrapper for BERT's cross-attention cache).
Export: torch.export -> `to_edge_transform_and_lower(..., partitioner=partitioners(quant))`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import ModelStoreError
from .specs import EXECUTORCH_BACKENDS as BACKENDS
SENTENCE_TOKENS = 64     # the sentence encoder's padded text length
MAX_CACHE = 256          # the decoder's static cache: prompt plus generated tokens
BERT_MAX_TOKENS = 64     # the BERT caption program's longest prefix ([CLS] + caption tokens)


def check_backend(quant: str) -> None:
    if quant not in BACKENDS:
        from ..errors import valid_names
        raise ModelStoreError(valid_names("ExecuTorch backend", quant, BACKENDS))


class _Sentence:
    """MiniLM with mean pooling and L2 norm, as zoo.minilm_embed, on token tensors."""

    def __new__(cls, net):
        import torch

        from .zoo import mean_pool

        class Wrap(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.bert = net.bert

            def forward(self, input_ids, attention_mask):
                return mean_pool(self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state,
                                 attention_mask)
        return Wrap().eval()


class _BeamStep:
    """The static-cache decoder at batch `beam`, with a third input `parents` [beam]: before the
    step each cache row becomes the row of the beam it continues (index_select + copy_ of every
    layer's key and value buffers), as transformers' beam search reorders its cache."""

    def __new__(cls, inner):
        import torch

        class Step(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = inner
                self.names = [f"{kv}_cache_{i}" for i in range(len(inner.static_cache.layers)) for kv in ("key", "value")]

            def forward(self, inputs_embeds, cache_position, parents):
                for name in self.names:
                    buf = getattr(self.inner, name)
                    buf.copy_(buf.index_select(0, parents))
                return self.inner(inputs_embeds=inputs_embeds, cache_position=cache_position)
        return Step().eval()


class _BertStep:
    """BertCaptioner without a cache: the query tokens from the features, then the next-token
    log-probabilities of every beam (as zoo.bert_caption computes them, without its cache)."""

    def __new__(cls, net):
        import torch

        class Step(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.bert, self.proj, self.queries = net.bert, net.proj, net.queries

            def forward(self, input_ids, features):
                enc = (self.proj(features.reshape(1, -1).float()) + self.queries).unsqueeze(0)
                out = self.bert(input_ids=input_ids, encoder_hidden_states=enc.expand(input_ids.shape[0], -1, -1),
                                use_cache=False)
                return torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
        return Step().eval()


def _bert(net, shape):
    import torch
    beam = int(shape.get("beam", 4))
    seq = torch.export.Dim("seq", min=1, max=BERT_MAX_TOKENS)
    feat = torch.randn(net.proj.in_features, generator=torch.Generator().manual_seed(0))
    return _BertStep(net), (), {"kwargs": {"input_ids": torch.full((beam, 4), 7, dtype=torch.long), "features": feat},
                               "dynamic_shapes": {"input_ids": {1: seq}, "features": None}}


def example_inputs(model: str, net, shape: dict) -> tuple[object, tuple, dict | None]:
    """(module to export, example args, dynamic shapes) of the program's `forward` method."""
    import torch
    g = torch.Generator().manual_seed(0)
    if model == "video-encoder":
        f, s = shape.get("frames", 6), shape.get("frame_size", 224)
        return net, (torch.randn(f, 3, s, s, generator=g),), None
    if model == "sentence-encoder":
        n = shape.get("items", 5)
        ids = torch.randint(1000, 2000, (n, SENTENCE_TOKENS), generator=g)
        return _Sentence(net), (ids, torch.ones(n, SENTENCE_TOKENS, dtype=torch.long)), None
    if model == "decoder":
        return _llama(net, 1)
    return _bert(net, shape)


def other_methods(model: str, net, shape: dict) -> dict:
    """The program's methods beside `forward`: name -> (module, example args, dynamic shapes)."""
    if model != "decoder":
        return {}
    import torch
    beam = int(shape.get("beam", 4))
    module, args, kw = _llama(net, beam)
    kw["kwargs"]["parents"] = torch.arange(beam)
    kw["dynamic_shapes"]["parents"] = None
    return {"beam": (_BeamStep(module), args, kw)}


def _llama(net, batch: int):
    import torch
    from transformers.integrations.executorch import TorchExportableModuleForDecoderOnlyLM
    lm = net.lm
    lm.generation_config.cache_implementation = "static"
    lm.config.use_cache = True
    wrap = TorchExportableModuleForDecoderOnlyLM(lm, batch_size=batch, max_cache_len=MAX_CACHE).eval()
    t = 4
    emb = torch.randn(batch, t, lm.config.hidden_size)
    seq = torch.export.Dim("seq", min=1, max=MAX_CACHE - 1)
    return wrap.model, (), {"kwargs": {"inputs_embeds": emb, "cache_position": torch.arange(t)},
                            "dynamic_shapes": {"inputs_embeds": {1: seq}, "cache_position": {0: seq}},
                            # strict (dynamo) export: the non-strict graph of the static cache fails in
                            # to_edge's run_decompositions ("expected compiled_fn to be GraphModule")
                            "strict": True}


def _quantizer():
    """XNNPACK's quantizer, dynamic int8 activations and per-channel int8 weights, without its
    scalar-to-tensor pass: that pass (`transform_for_annotation`, `_convert_scalars_to_attrs`) turns
    the `arange + 0` of transformers' attention-mask construction into a float tensor add, so that
    the mask's `aten.index` gets float indices and calibration fails ("IndexError: tensors used as
    indices must be long, int, byte or bool tensors"); the dynamic config annotates only linear and
    conv patterns, which take no scalars, so nothing it quantizes needs that pass."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                        get_symmetric_quantization_config)

    class Quantizer(XNNPACKQuantizer):
        def transform_for_annotation(self, model):
            return model
    return Quantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True))


def _quantize(module, args, kwargs):
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    import torch
    gm = torch.export.export(module, args, kwargs=kwargs.get("kwargs"), dynamic_shapes=kwargs.get("dynamic_shapes"),
                             strict=kwargs.get("strict", False)).module()
    gm = prepare_pt2e(gm, _quantizer())
    gm(*args, **(kwargs.get("kwargs") or {}))   # calibration pass (dynamic activations need none, the observers do)
    return convert_pt2e(gm)


def partitioners(quant: str) -> list:
    """XNNPACK's partitioners. int8: the dynamically quantized linears first (as ExecuTorch's own
    Llama export does), then the rest; one XnnpackPartitioner over the quantized decoder fails with
    "AssertionError: Invalid partition, found dependency cycles" (fuse_as_graphmodule)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
        XnnpackDynamicallyQuantizedPartitioner, XnnpackPartitioner)
    if quant == "executorch-xnnpack-int8":
        return [XnnpackDynamicallyQuantizedPartitioner(), XnnpackPartitioner()]
    return [XnnpackPartitioner()]


def lower(module, args, kwargs: dict | None, quant: str, others: dict | None = None):
    """The program's bytes: torch.export of `forward` (and of the `others` methods: name ->
    (module, args, kwargs)), (int8: XNNPACK's quantizer), XNNPACK partitioner, one program."""
    import torch
    from executorch.exir import to_edge_transform_and_lower
    eps = {}
    for name, (mod, a, kw) in {"forward": (module, args, kwargs), **(others or {})}.items():
        kw = kw or {}
        if quant == "executorch-xnnpack-int8":
            mod = _quantize(mod, a, kw)
        with torch.no_grad():
            eps[name] = torch.export.export(mod, a, kwargs=kw.get("kwargs"), dynamic_shapes=kw.get("dynamic_shapes"),
                                            strict=kw.get("strict", False))
    ep = eps if len(eps) > 1 else eps["forward"]
    return to_edge_transform_and_lower(ep, partitioner=partitioners(quant)).to_executorch().buffer


def program_inputs(model: str, args, kwargs) -> list[dict]:
    """What the program expects, for the manifest: name, dtype, shape (None: dynamic)."""
    if kwargs:
        ks = kwargs["kwargs"]
        return [{"name": k, "dtype": str(v.dtype).replace("torch.", ""),
                 "shape": [None if i in (kwargs["dynamic_shapes"].get(k) or {}) else d for i, d in enumerate(v.shape)]}
                for k, v in ks.items()]
    names = {"video-encoder": ["frames"], "sentence-encoder": ["input_ids", "attention_mask"]}[model]
    return [{"name": n, "dtype": str(a.dtype).replace("torch.", ""), "shape": list(a.shape)} for n, a in zip(names, args)]


def export_module(preset: str, model: str, quant: str, out_dir, store=None, shape=None) -> dict:
    """Export one zoo module (the store's fp32 weights) into out_dir/<model>.pte; its manifest entry."""
    from . import load, spec
    check_backend(quant)
    shape = dict(spec(preset, model).op_defaults.get(next(iter(spec(preset, model).op_defaults)), {}), **(shape or {}))
    mod = load(preset, model, "fp32", store=store)
    t0 = time.perf_counter()
    module, args, kwargs = example_inputs(model, mod.net, shape)
    others = other_methods(model, mod.net, shape)
    try:
        data = lower(module, args, kwargs, quant, others)
    except Exception as e:
        raise ModelStoreError(f"{model}/{quant} ({preset}) cannot be exported: {type(e).__name__}: "
                              f"{str(e).splitlines()[0][:300] if str(e) else ''}") from e
    out = Path(out_dir) / f"{model}.pte"
    from ..io import atomic_write_bytes
    atomic_write_bytes(out, data)
    entry = {"program": out.name, "model": model, "quant": quant, "preset": preset, "method": "forward",
             "bytes": len(data), "inputs": program_inputs(model, args, kwargs), "shape": shape,
             "export_s": round(time.perf_counter() - t0, 2)}
    if model == "decoder":
        beam = others["beam"]
        entry.update(max_cache_len=MAX_CACHE, hidden_size=mod.net.lm.config.hidden_size,
                     output="logits [1, T, vocab]", loop="prefill: one call with the prompt's embeddings and "
                     "cache_position 0..T-1; each decode step: one token's embedding at the next position",
                     methods={"beam": {"batch": int(beam[2]["kwargs"]["parents"].numel()),
                                       "inputs": program_inputs(model, beam[1], beam[2]),
                                       "output": "logits [beam, T, vocab]",
                                       "loop": "beam search on the host: prefill with the prompt in every row and parents "
                                       "0..beam-1; each step, each beam's last token at the next position and the row "
                                       "of the beam it continues (parents)"}})
    if model == "bert-decoder":
        entry.update(max_tokens=BERT_MAX_TOKENS, output="log-probabilities [beam, vocab] of the next token",
                     loop="beam search on the host: each step, the beams' token ids so far ([CLS] first) and the "
                     "clip's features; no cache (the prefix runs again each step)")
    mod.free()
    return entry


def export(preset: str, quant: str, out_dir, models=None, store=None) -> dict:
    """Every module's program, built into the model store if it is not there yet (executorch_module.build),
    copied into out_dir as <model>.pte; writes out_dir/manifest.json. Returns the manifest."""
    import shutil
    from .executorch_module import PROGRAM, build
    from .specs import MODELS
    from ..io import atomic_write_json
    manifest = {"preset": preset, "quant": quant, "programs": [], "not_exported": {}}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for m in models or MODELS:
        try:
            d = build(preset, m, quant, store=store)
        except ModelStoreError as e:
            manifest["not_exported"][m] = str(e)
            continue
        entry = dict(json.loads((d / "atomsim.json").read_text())["program"], program=f"{m}.pte")
        shutil.copyfile(d / PROGRAM, Path(out_dir) / f"{m}.pte.tmp")
        Path(out_dir, f"{m}.pte.tmp").replace(Path(out_dir) / entry["program"])
        manifest["programs"].append(entry)
    atomic_write_json(Path(out_dir) / "manifest.json", manifest)
    return manifest


def read_manifest(d) -> dict:
    p = Path(d) / "manifest.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ModelStoreError(f"{p}: cannot read the programs' manifest: {e}") from None


# ------------------------------------------------------------------ running programs

# The runtime's C extension, imported directly: `executorch.runtime` and `portable_lib` import
# `executorch.exir` (the exporter: 4.9 s here), which an app running programs never loads; a
# load timed through them measured that import (a 0.5 MB program "loaded" in 4 s instead of 3 ms).

def set_threads(threads: int) -> None:
    """XNNPACK's thread pool of this process (executor_runner's --cpu_threads). Programs loaded
    before keep the old pool: load them again (executorch_module._Pool)."""
    from executorch.extension.pybindings import _C
    _C._unsafe_reset_threadpool(int(threads))


def pool_threads() -> int:
    from executorch.extension.pybindings import _C
    return int(_C._threadpool_get_thread_count())


class Method:
    """A program's methods, loaded (file read and load_method of each: `forward` and `names`);
    `execute(inputs)` runs `forward` as executorch.runtime's Method, `execute(inputs, name)` another."""

    def __init__(self, path, names=()):
        from executorch.extension.pybindings import _C
        from .executorch_weights import share_packed_weights
        share_packed_weights()   # the methods share one packed copy of the weights
        self.program = _C._load_program(str(path), enable_etdump=False, debug_buffer_size=0,
                                        program_verification=_C.Verification.InternalConsistency, data_path=None)
        self.methods = {n: self.program.load_method(n) for n in ("forward", *names)}
        self.method = self.methods["forward"]

    def execute(self, inputs, name="forward"):
        return self.methods[name](list(inputs))


def planned_bytes(pte) -> int:
    """The activation memory a program plans ahead of time: the largest total of non-constant
    buffers among its methods' execution plans (allocated at load_method)."""
    from executorch.exir._serialize._program import deserialize_pte_binary
    plans = deserialize_pte_binary(Path(pte).read_bytes()).program.execution_plan
    return max((int(sum(p.non_const_buffer_sizes)) for p in plans), default=0)


def load_program(path, names=()) -> Method:
    """The program's `forward` method and the methods `names` (file read plus load_method)."""
    return Method(path, names)


def run(method, *inputs):
    return method.execute(list(inputs))


def embed_batches(method, tokenizer, texts: list, rows: int, length: int) -> list:
    """A text program's output 0 for `texts`: tokenized, padded or truncated to `length` tokens, in
    batches of the program's `rows` (a short last batch padded by repeating its last text; the
    padding rows dropped)."""
    out = []
    for i in range(0, len(texts), rows):
        batch = texts[i:i + rows]
        enc = tokenizer(batch + [batch[-1]] * (rows - len(batch)), padding="max_length", truncation=True,
                        max_length=length, return_tensors="pt")
        out.append(run(method, enc["input_ids"], enc["attention_mask"])[0][:len(batch)])
    return out


def greedy(method, embed, prefix_embeds, tokens: int) -> list[int]:
    """The decoder's token loop in Python: prefill with `prefix_embeds` [1, T, H], then one decode
    step per token (the static cache lives in the program). Greedy, batch 1."""
    import torch
    t = prefix_embeds.shape[1]
    logits = run(method, prefix_embeds, torch.arange(t))[0]
    out = []
    for i in range(tokens):
        tok = int(torch.argmax(logits[0, -1]))
        out.append(tok)
        if i + 1 < tokens:
            logits = run(method, embed[tok].reshape(1, 1, -1), torch.tensor([t + i]))[0]
    return out


def beam_search(method, embed, prefix_embeds, beam: int, tokens: int) -> list[int]:
    """The decoder's beam search in Python over the program's `beam` method (batch `beam`): prefill
    with the prefix [1, T, H] in every row, then per token zoo.beam_step on the rows' log-probabilities
    and one step with each beam's last token, the cache rows reordered by the beams' parents. The
    best sequence's tokens (every beam has the same length: no length penalty to apply)."""
    import torch
    from .zoo import beam_step
    vocab, t = embed.shape[0], prefix_embeds.shape[1]
    logits = method.execute([prefix_embeds.expand(beam, -1, -1).contiguous(), torch.arange(t), torch.arange(beam)],
                            "beam")[0]
    seqs, scores = torch.zeros(1, 0, dtype=torch.long), torch.zeros(1)
    logp = torch.log_softmax(logits[:1, -1].float(), dim=-1)   # the rows hold one sequence so far
    for i in range(tokens):
        seqs, scores, parents = beam_step(seqs, scores, logp, beam, vocab)
        if i + 1 < tokens:
            logits = method.execute([embed[seqs[:, -1]].unsqueeze(1).contiguous(), torch.tensor([t + i]), parents],
                                    "beam")[0]
            logp = torch.log_softmax(logits[:, -1].float(), dim=-1)
    return [int(x) for x in seqs[int(torch.argmax(scores))]]


def etdump_run(path, inputs: tuple, etdump_path, runs: int = 3, threads: int = 1):
    """Run a program `runs` times with ETDump on (as executor_runner --etdump_path does) and write the dump."""
    from executorch.extension.pybindings.portable_lib import _load_for_executorch
    from .executorch_weights import share_packed_weights
    share_packed_weights()
    set_threads(threads)
    m = _load_for_executorch(str(path), enable_etdump=True, debug_buffer_size=0)
    for _ in range(runs):
        m.forward(inputs)
    m.write_etdump_result_to_file(str(etdump_path))
    return Path(etdump_path)
