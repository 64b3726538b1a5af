#!/usr/bin/env bash
# The user-style checkpoints the pipelines here name: random weights of real transformers
# architectures, saved with save_pretrained, each with a tokenizer trained here (no hub).
#   bash scenarios/user/make-checkpoints.sh [tiny|small]     (default small: 11-26M parameters each)
set -euo pipefail
cd "$(dirname "$0")"
size="${1:-small}"
atomsim models checkpoint vision2seq ckpt/captioner --size "$size"
atomsim models checkpoint text-encoder ckpt/embedder --size "$size"
atomsim models checkpoint causal-lm ckpt/lm --size "$size"
atomsim models checkpoint seq2seq-lm ckpt/summarizer --size "$size"
