"""Hugging Face checkpoint modules (atomsim.models.hf, hf_ops, hf_make): tiny checkpoints of every
kind made locally, kind checks, store builds keyed by content hash, loads and ops."""
import json
import os
import shutil

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from atomsim.errors import ConfigError, ModelStoreError  # noqa: E402
from atomsim.models import hf, hf_make, hf_ops  # noqa: E402

PAIRS = [(k, q) for k in hf.KINDS for q in hf.QUANTS]
MODEL_TYPES = {"vision-encoder": "vit", "vision2seq": "vision-encoder-decoder", "causal-lm": "llama",
               "seq2seq-lm": "t5", "text-encoder": "bert"}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """kind -> a tiny checkpoint directory of that kind (made once for the module)."""
    root = tmp_path_factory.mktemp("hf-ckpts")
    return {k: hf_make.make_checkpoint(k, root / k, size="tiny", seed=0) for k in hf.KINDS}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("hf-store")


def _mod_copy(src, dst):
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------- hf_make

def test_make_checkpoint_files_and_tokenizer(ckpts, tmp_path):
    from transformers import AutoTokenizer
    for kind, d in ckpts.items():
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["model_type"] == MODEL_TYPES[kind]
        assert (d / "model.safetensors").stat().st_size < 2_000_000, kind   # tiny: under 2 MB
        assert (d / "preprocessor_config.json").exists() == (kind in ("vision-encoder", "vision2seq"))
        assert (d / "tokenizer.json").exists() == (kind != "vision-encoder")
        if kind == "vision-encoder":
            continue
        tok = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
        ids = tok("a person walks along the street", add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids and tok.decode(ids).strip() == "a person walks along the street"
    # the vocabulary is the model's: every token id has an embedding row
    cfg = json.loads((ckpts["causal-lm"] / "config.json").read_text())
    assert cfg["vocab_size"] == len(AutoTokenizer.from_pretrained(str(ckpts["causal-lm"])))
    # seeded: same seed, same bytes; another seed, other weights
    again = hf_make.make_checkpoint("causal-lm", tmp_path / "again", seed=0)
    other = hf_make.make_checkpoint("causal-lm", tmp_path / "other", seed=1)
    w = (ckpts["causal-lm"] / "model.safetensors").read_bytes()
    assert (again / "model.safetensors").read_bytes() == w
    assert (other / "model.safetensors").read_bytes() != w


def test_make_cli(tmp_path, capsys):
    assert hf_make.main(["text-encoder", str(tmp_path / "te")]) == 0
    assert (tmp_path / "te" / "config.json").exists()
    assert capsys.readouterr().out.strip() == str(tmp_path / "te")
    assert hf_make.main(["bogus", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("atomsim: error: unknown kind 'bogus'") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
    assert hf_make.main(["causal-lm", str(tmp_path / "y"), "--size", "huge"]) == 2
    assert "unknown size 'huge'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        hf_make.main(["--help"])
    assert e.value.code == 0 and "--size" in capsys.readouterr().out


# ---------------------------------------------------------------- kinds

def test_check_kind_accepts_its_kind_and_refuses_others(ckpts):
    for kind, d in ckpts.items():
        hf.check_kind(d, kind)
        refused = [k for k in hf.KINDS if k != kind and not _accepts(d, k)]
        # a T5 checkpoint is also a text encoder (T5EncoderModel); nothing else is two kinds
        assert set(refused) == set(hf.KINDS) - {kind} - ({"text-encoder"} if kind == "seq2seq-lm" else set())


def _accepts(d, kind):
    try:
        hf.check_kind(d, kind)
        return True
    except ConfigError as e:
        msg = str(e)
        assert str(d) in msg and "field 'kind'" in msg and "\n" not in msg
        return False


def test_check_kind_messages(ckpts, tmp_path):
    bert = ckpts["text-encoder"]
    # BERT's model_type is in the causal-LM mapping (BertLMHeadModel), but this checkpoint has no LM head
    with pytest.raises(ConfigError, match=r"no weights for the head of BertLMHeadModel") as e:
        hf.check_kind(bert, "causal-lm")
    assert str(bert) in str(e.value)
    with pytest.raises(ConfigError, match=r"model_type 'llama' is not a text-encoder"):
        hf.check_kind(ckpts["causal-lm"], "text-encoder")
    with pytest.raises(ConfigError, match=r"unknown kind 'lm'; valid: causal-lm, seq2seq-lm, text-encoder"):
        hf.check_kind(bert, "lm")
    with pytest.raises(ConfigError, match=r"no such checkpoint directory"):
        hf.check_kind(tmp_path / "nope", "text-encoder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"empty: field 'kind' \(text-encoder\): .*no config.json"):
        hf.check_kind(tmp_path / "empty", "text-encoder")
    (tmp_path / "noweights").mkdir()
    shutil.copy(bert / "config.json", tmp_path / "noweights" / "config.json")
    with pytest.raises(ConfigError, match=r"noweights: field 'kind' \(text-encoder\): no weights"):
        hf.check_kind(tmp_path / "noweights", "text-encoder")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"model_type": "no-such-arch"}')
    with pytest.raises(ConfigError, match=r"bad: field 'kind' \(causal-lm\): config.json cannot be read"):
        hf.check_kind(tmp_path / "bad", "causal-lm")


# ---------------------------------------------------------------- content hash and store

def test_content_hash(ckpts, tmp_path):
    d = _mod_copy(ckpts["causal-lm"], tmp_path / "a")
    h = hf.content_hash(d)
    assert len(h) == 64 and h == hf.content_hash(ckpts["causal-lm"])   # location does not matter
    (d / "tokenizer_config.json").write_text((d / "tokenizer_config.json").read_text() + " ")
    h2 = hf.content_hash(d)
    assert h2 != h
    (d / "tokenizer_config.json").rename(d / "tokenizer_config2.json")   # same bytes, other name
    assert hf.content_hash(d) not in (h, h2)


@pytest.mark.slow
def test_build_layout_and_rebuild_only_on_change(ckpts, tmp_path):
    store = tmp_path / "store"
    src = _mod_copy(ckpts["causal-lm"], tmp_path / "lm")
    h = hf.content_hash(src)
    d = hf.build(src, "causal-lm", "fp32", store=store)
    assert d == store / "hf" / h[:16] / "causal-lm" / "fp32"
    meta = json.loads((d / "atomsim.json").read_text())
    w = d / "model.safetensors"
    assert meta["content_hash"] == h and meta["kind"] == "causal-lm" and meta["quant"] == "fp32"
    assert meta["source"] == str(src.resolve()) and meta["architecture"] == "LlamaForCausalLM"
    assert meta["files"]["model.safetensors"] == {"bytes": w.stat().st_size, "sha256": hf_store_sha(w)}
    assert meta["params"] == sum(p.numel() for p in _reference(src, "causal-lm").parameters())
    for n in ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (d / n).read_bytes() == (src / n).read_bytes()
    assert hf.weight_files(src, "causal-lm", "fp32", store=store) == [w]
    assert not [p for p in d.parent.iterdir() if p.name.startswith(".")]   # no temporary left
    mtime = w.stat().st_mtime_ns
    assert hf.build(src, "causal-lm", "fp32", store=store) == d and w.stat().st_mtime_ns == mtime
    # the content changes: a new store directory; the old one stays as it was
    (src / "tokenizer_config.json").write_text((src / "tokenizer_config.json").read_text() + "\n")
    d2 = hf.build(src, "causal-lm", "fp32", store=store)
    assert d2 != d and d2.parent.parent.name == hf.content_hash(src)[:16] != h[:16]
    assert w.stat().st_mtime_ns == mtime
    assert hf.weight_files(src, "causal-lm", "fp32", store=store) == [d2 / "model.safetensors"]


def hf_store_sha(path):
    from atomsim.models.store import sha256
    return sha256(path)


@pytest.mark.slow
def test_int8_file_smaller_than_fp32(ckpts, store):
    for kind, d in ckpts.items():
        fp32, int8 = (hf.build(d, kind, q, store=store) for q in hf.QUANTS)
        a, b = (fp32 / "model.safetensors").stat().st_size, (int8 / "model.pt").stat().st_size
        assert b < 0.9 * a, (kind, a, b)
        est = hf.describe(d, kind)["file_bytes"]
        assert abs(est["fp32"] - a) < 0.05 * a, (kind, est, a)


# ---------------------------------------------------------------- load and ops

def _reference(src, kind):
    """The checkpoint as transformers itself loads it (the truth the store's copy must match)."""
    from atomsim.models.hf import _auto_config, model_class
    with hf_ops.quiet_transformers():
        return model_class(_auto_config(src, kind), kind).from_pretrained(str(src)).eval()


@pytest.mark.slow
@pytest.mark.parametrize("kind,quant", PAIRS)
def test_load_and_run(ckpts, store, kind, quant):
    from torch.ao.nn.quantized.dynamic import Linear as QLinear
    from transformers.pytorch_utils import Conv1D
    src = ckpts[kind]
    mod = hf.load(src, kind, quant, store=store)
    assert mod.quant == quant and mod.kind == kind and mod.name == f"{kind}/{quant}"
    assert mod.model == str(src.resolve()) and mod.path == hf.weight_files(src, kind, quant, store=store)[0].parent
    assert mod.params == json.loads((mod.path / "atomsim.json").read_text())["params"] > 10_000
    if quant == "torch-dynamic-int8":   # every Linear (and GPT-2's Conv1D) saved and loaded as int8
        assert any(isinstance(m, QLinear) for m in mod.net.modules())
        assert not [m for m in mod.net.modules() if type(m) is torch.nn.Linear or isinstance(m, Conv1D)]
    op = hf.KIND_OPS[kind][0]
    other = [o for ops in hf.KIND_OPS.values() for o in ops if o != op][0]
    with pytest.raises(AttributeError):
        getattr(mod, other)(*([torch.zeros(1, 3, 8, 8)] if other in ("encode", "caption") else ["x"]))
    _run_op(mod, kind)
    mod.free()
    assert mod.net is None and mod.tokenizer is None
    with pytest.raises(RuntimeError, match="freed"):
        getattr(mod, op)(*([torch.zeros(6, 3, 224, 224)] if op in ("encode", "caption") else [["x"]]))


def _run_op(mod, kind):
    g = torch.Generator().manual_seed(1)
    frames = torch.randn(6, 3, 224, 224, generator=g)
    if kind == "vision-encoder":
        (x,) = mod.example_inputs("encode")
        assert x.shape == (6, 3, 224, 224)
        a, b = mod.encode(x), mod.encode(frames)
        assert a.shape == (mod.net.config.hidden_size,) and torch.isfinite(a).all()
        assert not torch.allclose(a, b)   # the features depend on the frames
        assert mod.encode(torch.nn.functional.interpolate(frames, size=160)).shape == a.shape   # resized
    elif kind == "vision2seq":
        x, beam, tokens = mod.example_inputs("caption", beam=3, tokens=7)
        assert x.shape == (6, 3, 224, 224) and (beam, tokens) == (3, 7)
        calls = _spy_generate(mod)
        text = mod.caption(frames, beam=2, tokens=9)
        assert isinstance(text, str) and text
        kw, out = calls[0]
        # the middle frame, in the checkpoint's normalization; 2 beams; exactly 9 tokens after the start token
        assert torch.equal(kw["pixel_values"], hf_ops.to_pixels(frames[3:4], mod.image))
        assert kw["num_beams"] == 2 and kw["min_new_tokens"] == kw["max_new_tokens"] == 9 and out.shape == (1, 10)
        assert text == mod.tokenizer.decode(out[0], skip_special_tokens=True).strip()
    elif kind in ("causal-lm", "seq2seq-lm"):
        prompt, tokens = mod.example_inputs("generate", prompt_tokens=40, tokens=11)
        n = len(mod.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        assert tokens == 11 and 30 <= n <= 40
        calls = _spy_generate(mod)
        text = mod.generate(prompt, tokens=tokens)
        assert isinstance(text, str) and text
        kw, out = calls[0]
        new = out.shape[1] - (kw["input_ids"].shape[1] if kind == "causal-lm" else 1)   # seq2seq: start token
        assert new == 11 and kw["num_beams"] == 1 and not kw["do_sample"]
        long = mod.generate("the city at night " * 300, tokens=5)   # longer than the positions
        room = 5 if kind == "causal-lm" else 0   # a causal LM's new tokens take positions too
        assert isinstance(long, str) and calls[1][0]["input_ids"].shape[1] + room <= _positions(mod)
    else:
        (texts,) = mod.example_inputs("embed", items=5)
        assert len(texts) == 5
        emb = mod.embed(texts + ["a dog runs in the park"])
        assert emb.shape == (6, mod.net.config.hidden_size)
        assert torch.allclose(emb.norm(dim=1), torch.ones(6), atol=1e-4)
        assert not torch.allclose(emb[0], emb[-1])


def _spy_generate(mod) -> list:
    """Record (kwargs, output) of every call of mod.net.generate."""
    calls, real = [], mod.net.generate

    def spy(**kw):
        out = real(**kw)
        calls.append((kw, out))
        return out
    mod.net.generate = spy
    return calls


def _positions(mod):
    c = mod.net.config
    return getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", None) or 10**9


@pytest.mark.slow
@pytest.mark.parametrize("kind", hf.KINDS)
def test_fp32_matches_transformers_and_int8_is_close(ckpts, store, kind):
    """The store's fp32 copy computes what transformers' own load of the checkpoint computes
    (tied weights re-tied, nothing left random); the int8 copy stays close to it."""
    src = ckpts[kind]
    ref = _reference(src, kind)
    outs = []
    for quant in hf.QUANTS:
        mod = hf.load(src, kind, quant, store=store)
        outs.append(_forward(mod.net, kind))
        mod.free()
    want = _forward(ref, kind)
    assert torch.allclose(outs[0], want, atol=1e-5), kind
    cos = torch.nn.functional.cosine_similarity(outs[1].flatten(), want.flatten(), dim=0).item()
    assert cos > 0.98, (kind, cos)


@torch.inference_mode()
def _forward(net, kind):
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(5, 200, (2, 12), generator=g)
    px = torch.randn(2, 3, 224, 224, generator=g)
    if kind == "vision-encoder":
        return net(pixel_values=px).pooler_output
    if kind == "vision2seq":
        return net(pixel_values=px, decoder_input_ids=ids).logits
    if kind == "causal-lm":
        return net(input_ids=ids).logits
    if kind == "seq2seq-lm":
        return net(input_ids=ids, decoder_input_ids=ids[:, :5]).logits
    return net(input_ids=ids).last_hidden_state


def test_to_pixels_renormalizes_and_resizes():
    raw = torch.rand(2, 3, 32, 32)
    clip = (raw - torch.tensor(hf_ops.CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(hf_ops.CLIP_STD).view(1, 3, 1, 1)
    vit = {"size": 32, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    assert torch.allclose(hf_ops.to_pixels(clip, vit), (raw - 0.5) / 0.5, atol=1e-5)
    same = {"size": 32, "mean": hf_ops.CLIP_MEAN, "std": hf_ops.CLIP_STD}
    assert torch.equal(hf_ops.to_pixels(clip, same), clip)
    assert hf_ops.to_pixels(clip, dict(vit, size=16)).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"\[F, 3, H, W\]"):
        hf_ops.to_pixels(torch.zeros(3, 32, 32), vit)


@pytest.mark.slow
def test_verify_detects_corrupt_weights(ckpts, tmp_path):
    src, store = ckpts["text-encoder"], tmp_path / "store"
    d = hf.build(src, "text-encoder", "fp32", store=store)
    w = d / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-100] ^= 0xFF   # a weight byte flipped, the size unchanged
    w.write_bytes(bytes(data))
    hf.load(src, "text-encoder", "fp32", store=store).free()   # not verified: loads
    with pytest.raises(ModelStoreError, match="sha256 mismatch"):
        hf.load(src, "text-encoder", "fp32", store=store, verify=True)
    w.write_bytes(bytes(data[:-8]))   # truncated: incomplete, so rebuilt in place
    mod = hf.load(src, "text-encoder", "fp32", store=store, verify=True)
    assert mod.path == d and hf_store_sha(w) == json.loads((d / "atomsim.json").read_text())[
        "files"]["model.safetensors"]["sha256"]
