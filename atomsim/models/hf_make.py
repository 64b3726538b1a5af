"""Make a user-style Hugging Face checkpoint directory locally (no hub): random weights of a real
transformers architecture, its own tokenizer, an image processor for the vision kinds.

What `make_checkpoint(kind, out_dir)` writes, by kind (the architectures `hf.check_kind` accepts):

- `vision-encoder`: `ViTModel` (pooled output per frame).
- `vision2seq`: `VisionEncoderDecoderModel`, a ViT encoder and a GPT-2 decoder with cross-attention
  (the architecture of `nlpconnect/vit-gpt2-image-captioning`); `decoder_start_token_id` = `<s>`,
  `pad_token_id` = `<pad>`, `eos_token_id` = `</s>`, so `generate(pixel_values=...)` works.
- `causal-lm`: `LlamaForCausalLM` (tied embeddings).
- `seq2seq-lm`: `T5ForConditionalGeneration` (`decoder_start_token_id` = `<pad>`, as T5's).
- `text-encoder`: `BertModel`.

The tokenizer is a byte-level BPE trained with the `tokenizers` library on `CORPUS` (a few hundred
words of English), wrapped as a `PreTrainedTokenizerFast` with `<pad>`=0, `<s>`=1, `</s>`=2,
`<unk>`=3, `<mask>`=4; its vocabulary (a few hundred tokens, all the corpus allows) is the model's.
The vision kinds get a `ViTImageProcessorPil` (the PIL one: torchvision is not needed).

Sizes: `tiny` is for tests (0.1-0.4M parameters, 0.4-1.7 MB of weights, made in well under a
second once transformers is imported); `small` is a pipeline of tens of millions of parameters (captioner about 25M, LM about
24M, seq2seq about 21M, text encoder about 11M, vision encoder about 22M: ViT-S/16).

Command line: `python -m atomsim.models.hf_make KIND OUT_DIR [--size tiny|small] [--seed N]`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

SIZES = ("tiny", "small")
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>", "<mask>")
PAD, BOS, EOS = 0, 1, 2

CORPUS = """\
A person walks along a busy city street at night while cars pass under bright lights.
A woman opens a gift box and smiles at the camera in a warm living room.
Two children play football on a green field near a school on a sunny afternoon.
A man cooks pasta in a small kitchen, stirring the pot and adding salt and pepper.
The camera pans across a quiet beach where waves roll onto the sand at sunset.
A dog runs through the park chasing a red ball thrown by its owner.
People gather in a market to buy fresh fruit, bread, fish and vegetables.
A cyclist rides down a mountain road with trees on both sides and clouds above.
A teacher writes on the board while students take notes in a bright classroom.
An old train arrives at the station and passengers step onto the platform.
A chef slices onions and tomatoes on a wooden board before frying them in oil.
The video shows a crowd cheering at a concert as the band plays on stage.
A girl reads a book by the window while rain falls on the glass.
A boy builds a tower of blocks and laughs when it falls down.
Snow covers the roofs of the village and smoke rises from the chimneys.
A family sits at the table and shares dinner, talking about their day.
A woman jogs by the river in the morning with headphones in her ears.
A man repairs a bicycle in his garage, tightening the chain with a tool.
The scene cuts to an airport where planes take off into a grey sky.
A cat sleeps on the sofa next to a blanket and a cup of tea.
Workers build a new house, carrying bricks and wood across the site.
A musician plays the guitar in the square and people stop to listen.
The player kicks the ball into the goal and the team celebrates together.
A couple walks their dog along the harbour as boats rock on the water.
Fireworks light up the night sky above the city during the festival.
A baker takes warm bread out of the oven and places it on a shelf.
A girl paints a picture of flowers with bright colours on a large canvas.
Cars wait at a red light, then move when the signal turns green.
A student types on a laptop in the library surrounded by tall shelves.
Birds fly over the lake as the sun rises behind the hills.
What happens in this video? Describe the scene, the people and the order of events.
Summarize the clip: who is there, where are they, and what do they do next?
The order arrived late, so the customer called the shop and asked for a refund.
Please write a short script that joins the best clips into one story for the user.
"""

_TINY = {
    "vit": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                image_size=224, patch_size=32),
    "gpt2": dict(n_embd=64, n_layer=2, n_head=4, n_inner=128, n_positions=128),
    "llama": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=128, head_dim=16, max_position_embeddings=512),
    "t5": dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4),
    "bert": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                 max_position_embeddings=512),
}
_SMALL = {
    "vit": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                image_size=224, patch_size=16),
    "vit-captioner": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=6,
                          intermediate_size=1536, image_size=224, patch_size=16),
    "gpt2": dict(n_embd=384, n_layer=6, n_head=6, n_inner=1536, n_positions=256),
    "llama": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
                  intermediate_size=1408, head_dim=64, max_position_embeddings=1024),
    "t5": dict(d_model=512, d_kv=64, d_ff=1024, num_layers=4, num_decoder_layers=4, num_heads=8),
    "bert": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=6, intermediate_size=1536,
                 max_position_embeddings=512),
}


def train_tokenizer(kind: str, vocab_size: int = 1000):
    """A byte-level BPE trained on CORPUS, as a PreTrainedTokenizerFast; the post-processor adds
    `<s>` before (causal LM), `</s>` after (seq2seq, as T5) or both (text encoder)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    template = {"causal-lm": ("<s> $A", "<s> $A <s> $B"), "seq2seq-lm": ("$A </s>", "$A </s> $B </s>"),
                "text-encoder": ("<s> $A </s>", "<s> $A </s> $B </s>")}.get(kind)
    if template:
        tok.post_processor = processors.TemplateProcessing(
            single=template[0], pair=template[1], special_tokens=[("<s>", BOS), ("</s>", EOS)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", mask_token="<mask>", model_max_length=512)


def _ids() -> dict:
    return dict(pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS)


def make_model(kind: str, size: str, vocab: int):
    """The random-weight model of `kind` (torch's global generator: seed it first)."""
    import transformers as tf
    arch = _TINY if size == "tiny" else _SMALL
    if kind == "vision-encoder":
        return tf.ViTModel(tf.ViTConfig(**arch["vit"]))
    if kind == "vision2seq":
        enc = tf.ViTConfig(**arch.get("vit-captioner", arch["vit"]))
        dec = tf.GPT2Config(vocab_size=vocab, add_cross_attention=True, is_decoder=True, **arch["gpt2"], **_ids())
        cfg = tf.VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
        cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = BOS, PAD, EOS
        cfg.vocab_size = vocab
        return tf.VisionEncoderDecoderModel(config=cfg)
    if kind == "causal-lm":
        cfg = tf.LlamaConfig(vocab_size=vocab, tie_word_embeddings=True, **arch["llama"], **_ids())
        return tf.LlamaForCausalLM(cfg)
    if kind == "seq2seq-lm":
        return tf.T5ForConditionalGeneration(tf.T5Config(vocab_size=vocab, decoder_start_token_id=PAD,
                                                         pad_token_id=PAD, eos_token_id=EOS, **arch["t5"]))
    if kind == "text-encoder":
        return tf.BertModel(tf.BertConfig(vocab_size=vocab, pad_token_id=PAD, **arch["bert"]))
    raise ValueError(kind)


def _generation_config(model, kind: str) -> None:
    """Generation defaults that do not stop early or sample (the ops pass their own lengths)."""
    if kind in ("vision-encoder", "text-encoder"):
        return
    from transformers import GenerationConfig
    start = PAD if kind == "seq2seq-lm" else BOS
    model.generation_config = GenerationConfig(
        bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
        decoder_start_token_id=start if kind in ("vision2seq", "seq2seq-lm") else None, do_sample=False)


def make_checkpoint(kind: str, out_dir, size: str = "tiny", seed: int = 0) -> Path:
    """Write a checkpoint directory of `kind` (hf.KINDS) and `size` (tiny | small) to `out_dir`:
    config.json, model.safetensors, tokenizer files (not for the vision encoder), and for the
    vision kinds preprocessor_config.json. Deterministic for a given seed. Returns the directory."""
    from .hf import KINDS
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; valid: {', '.join(SIZES)}")
    import torch

    from ..io import atomic_dir
    from .hf_ops import quiet_transformers
    out = Path(out_dir)
    tok = train_tokenizer(kind, vocab_size=512 if size == "tiny" else 1000)
    torch.manual_seed(seed)
    with atomic_dir(out) as tmp:     # complete or absent: a killed run leaves no half checkpoint
        with quiet_transformers():
            model = make_model(kind, size, len(tok)).eval()
            _generation_config(model, kind)
            model.save_pretrained(str(tmp))
            if kind != "vision-encoder":   # a vision tower has no tokenizer
                tok.save_pretrained(str(tmp))
        if kind in ("vision-encoder", "vision2seq"):
            from transformers import ViTImageProcessorPil
            side = (_TINY if size == "tiny" else _SMALL)["vit"]["image_size"]
            ViTImageProcessorPil(size={"height": side, "width": side}).save_pretrained(str(tmp))
    return out


def main(argv=None) -> int:
    """`python -m atomsim.models.hf_make KIND OUT_DIR [--size tiny|small] [--seed N]`; exit code."""
    from .hf import KINDS
    p = argparse.ArgumentParser(prog="python -m atomsim.models.hf_make",
                                description="Make a Hugging Face checkpoint directory with random weights of a "
                                            "real architecture and its own tokenizer (no hub).")
    p.add_argument("kind", metavar="KIND", help=f"one of: {', '.join(KINDS)}")
    p.add_argument("out_dir", metavar="OUT_DIR", help="directory to write (created if absent)")
    p.add_argument("--size", default="tiny", help="tiny (tests: 0.1-0.4M parameters) | small (11-26M parameters)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    args = p.parse_args(argv)
    try:
        if args.kind not in KINDS:
            raise ValueError(f"unknown kind {args.kind!r}; valid: {', '.join(KINDS)}")
        if args.size not in SIZES:
            raise ValueError(f"unknown size {args.size!r}; valid: {', '.join(SIZES)}")
        out = make_checkpoint(args.kind, args.out_dir, size=args.size, seed=args.seed)
    except (ValueError, OSError) as e:
        sys.stderr.write(f"atomsim: error: {' '.join(str(e).split())}\n")
        return 2
    sys.stdout.write(f"{out}\n")
    return 0


if __name__ == "__main__":   # pragma: no cover
    sys.exit(main())
