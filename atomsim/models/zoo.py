"""The modules (nn.Module) and their ops. Built with parameters on the meta device.

Tokenizer of the synthetic decoders (documented choice): there is no hub access, so
`HashTokenizer` splits text on whitespace and maps each word to
`3 + crc32(word) % (vocab - 3)` (0 = pad, 1 = bos, 2 = eos); it decodes id i as the word
`"w<i>"`. It is deterministic and has the real vocabulary size, so embedding/lm-head costs are
real. A user loading a real checkpoint with `load(..., path=DIR)` gets the tokenizer of DIR.
"""
from __future__ import annotations

import contextlib
import zlib

import torch
from torch import nn


@contextlib.contextmanager
def meta_params():
    """Create parameters on the meta device; buffers stay real (rotary inv_freq, position ids)."""
    orig = nn.Module.register_parameter

    def register(self, name, param):
        orig(self, name, param)
        if param is not None and param.device.type != "meta":
            p = self._parameters[name]
            self._parameters[name] = nn.Parameter(p.to("meta"), requires_grad=p.requires_grad)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = orig


class HashTokenizer:
    pad_id, bos_id, eos_id = 0, 1, 2

    def __init__(self, vocab_size: int):
        self.vocab_size = int(vocab_size)

    def encode(self, text: str) -> list[int]:
        return [self.bos_id] + [3 + zlib.crc32(w.encode()) % (self.vocab_size - 3) for w in text.split()]

    def decode(self, ids) -> str:
        return " ".join(f"w{int(i)}" for i in ids if int(i) > 2)


class VideoEncoder(nn.Module):
    """CLIP vision tower on the F frames of a clip as a batch; pooled output mean over time; projection."""

    def __init__(self, cfg: dict):
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModel
        self.vision = CLIPVisionModel(CLIPVisionConfig(**cfg["clip"]))
        self.proj = nn.Linear(cfg["clip"]["hidden_size"], cfg["out_dim"])

    def forward(self, frames):
        out = self.vision(pixel_values=frames, interpolate_pos_encoding=True).pooler_output
        return self.proj(out.mean(0, keepdim=True))[0]


class LlamaDecoder(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        from transformers import LlamaConfig, LlamaForCausalLM
        c = LlamaConfig(**cfg["llama"], bos_token_id=1, eos_token_id=2, pad_token_id=0)
        self.lm = LlamaForCausalLM(c)

    def retie(self):
        if self.lm.config.tie_word_embeddings and isinstance(self.lm.lm_head, nn.Linear):
            self.lm.lm_head.weight = self.lm.model.embed_tokens.weight


class BertCaptioner(nn.Module):
    """BERT decoder (causal self-attention + cross-attention) over `queries` tokens from the features."""

    def __init__(self, cfg: dict):
        super().__init__()
        from transformers import BertConfig, BertLMHeadModel
        self.bert = BertLMHeadModel(BertConfig(**cfg["bert"], pad_token_id=0))
        h = cfg["bert"]["hidden_size"]
        self.proj = nn.Linear(cfg["feature_dim"], h)
        self.queries = nn.Parameter(torch.zeros(cfg["queries"], h))

    def retie(self):
        b = self.bert
        if b.config.tie_word_embeddings and isinstance(b.cls.predictions.decoder, nn.Linear):
            b.cls.predictions.decoder.weight = b.bert.embeddings.word_embeddings.weight


class MiniLM(nn.Module):
    def __init__(self, cfg_dir):
        super().__init__()
        from transformers import BertConfig, BertModel
        self.bert = BertModel(BertConfig.from_pretrained(str(cfg_dir)))


def make(model: str, cfg: dict, cfg_dir=None) -> nn.Module:
    """The module with its parameters on the meta device."""
    with meta_params():
        if model == "video-encoder":
            return VideoEncoder(cfg)
        if model == "decoder":
            return LlamaDecoder(cfg)
        if model == "bert-decoder":
            return BertCaptioner(cfg)
        return MiniLM(cfg_dir)


def retie(m: nn.Module):
    if hasattr(m, "retie"):
        m.retie()


def fill_synthetic(m: nn.Module, seed: int) -> None:
    """Fill every (meta) parameter: normal*0.02, norm weights 1, biases 0; one seeded generator
    per parameter name, so the bytes depend only on (seed, name, shape)."""
    for mname, mod in list(m.named_modules()):
        for pname, p in list(mod._parameters.items()):
            if p is None:
                continue
            full = f"{mname}.{pname}" if mname else pname
            norm = "norm" in type(mod).__name__.lower()
            if pname == "bias":
                t = torch.zeros(p.shape)
            elif norm:
                t = torch.ones(p.shape)
            else:
                g = torch.Generator().manual_seed((seed * 1000003 + zlib.crc32(full.encode())) % 2**63)
                t = torch.empty(p.shape).normal_(0.0, 0.02, generator=g)
            mod._parameters[pname] = nn.Parameter(t, requires_grad=False)
    retie(m)


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ---------------------------------------------------------------- ops

@torch.inference_mode()
def encode(m: VideoEncoder, frames: torch.Tensor) -> torch.Tensor:
    return m(frames.float())


@torch.inference_mode()
def llama_caption(m: LlamaDecoder, features, beam=4, tokens=23) -> list[int]:
    lm = m.lm
    emb = features.reshape(1, 1, -1).to(lm.model.embed_tokens.weight.dtype if
                                         lm.model.embed_tokens.weight.is_floating_point() else torch.float32)
    bos = lm.model.embed_tokens(torch.tensor([[1]]))
    embeds = torch.cat([emb, bos.to(emb.dtype)], dim=1)
    out = lm.generate(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
                      num_beams=beam, do_sample=False, min_new_tokens=tokens, max_new_tokens=tokens,
                      eos_token_id=None, pad_token_id=0, early_stopping=False, length_penalty=1.0,
                      num_return_sequences=1, use_cache=True)
    return [int(t) for t in out[0, -tokens:]]


@torch.inference_mode()
def llama_generate(m: LlamaDecoder, tok, prompt: str, tokens=64) -> str:
    lm = m.lm
    ids = torch.tensor([tok.encode(prompt)])
    out = lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, num_beams=1,
                      min_new_tokens=tokens, max_new_tokens=tokens, eos_token_id=None, pad_token_id=0,
                      use_cache=True)
    return tok.decode(out[0, ids.shape[1]:].tolist())


@torch.inference_mode()
def bert_caption(m: BertCaptioner, features, beam=4, tokens=23) -> list[int]:
    """Beam search by hand: beam-width batch, KV cache, cross-attention to the query tokens."""
    from transformers import DynamicCache, EncoderDecoderCache
    b = m.bert
    enc = (m.proj(features.reshape(1, -1).float()) + m.queries).unsqueeze(0)  # [1, Q, H]
    vocab = b.config.vocab_size
    cls = 101 if vocab > 101 else 1
    seqs = torch.full((1, 1), cls, dtype=torch.long)
    scores = torch.zeros(1)
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    inp = seqs
    for step in range(tokens):
        n = seqs.shape[0]
        out = b(input_ids=inp, encoder_hidden_states=enc.expand(n, -1, -1), cache=cache,
                use_cache=True)
        cache = getattr(out, "cache", None) or out.past_key_values
        logp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
        seqs, scores, src = beam_step(seqs, scores, logp, beam, vocab)
        if src.numel() != n or not torch.equal(src, torch.arange(n)):
            cache.reorder_cache(src)
        inp = seqs[:, -1:]
    best = int(torch.argmax(scores))
    return [int(t) for t in seqs[best, 1:]]


def beam_step(seqs, scores, logp, beam: int, vocab: int):
    """One step of the beam search: the `beam` best (sequence, next token) of every sequence's
    log-probabilities `logp` [n, vocab]; (sequences, scores, the row each came from)."""
    top, idx = torch.topk((scores[:, None] + logp).reshape(-1), beam)
    src = idx // vocab
    return torch.cat([seqs[src], (idx % vocab)[:, None]], dim=1), top, src


def mean_pool(hid, attention_mask):
    """Mean of the token states the mask keeps, L2-normalized (sentence-transformers' pooling)."""
    mask = attention_mask.unsqueeze(-1).to(hid.dtype)
    pooled = (hid * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


@torch.inference_mode()
def minilm_embed(m: MiniLM, tokenizer, texts: list[str]) -> torch.Tensor:
    """Same pipeline as sentence-transformers all-MiniLM-L6-v2: max 256 tokens, mean pooling, L2 norm."""
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=256, return_tensors="pt")
    return mean_pool(m.bert(**enc).last_hidden_state, enc["attention_mask"])
