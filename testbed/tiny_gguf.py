"""Write a tiny random-weight llama GGUF that the real ``llama-server`` loads in milliseconds.

The model is nonsense on purpose: it exists so tests can drive a real llama.cpp server
(load, /health, streamed chat, stop) on a CPU-only machine without downloading weights.
It is a 64-dim, 2-layer llama with a ~270-token SentencePiece ("llama") vocabulary and a
ChatML chat template in its metadata, about 0.5 MB, and byte-identical for a given seed.

    python -m testbed.tiny_gguf OUT.gguf [--seed N]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

ARCH = "llama"
MODEL_NAME = "dxg-tiny-llama"

# ChatML: llama-server renders it with its jinja engine; <|im_start|>/<|im_end|> are control
# tokens in the vocabulary, so the prompt does not have to be spelled out byte by byte.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_SPECIAL = ("<unk>", "<s>", "</s>")
_CHAT_CONTROL = ("<|im_start|>", "<|im_end|>")
# The only tokens the model ever emits (see _output_weights); whole words keep replies readable.
_WORDS = ("▁", "▁tiny", "▁llama", "▁says", "▁hello", "▁ok", "▁yes", "!", ".")
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2


@dataclass(frozen=True)
class TinyLlamaShape:
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_ff: int = 128
    context_length: int = 2048

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


@dataclass(frozen=True)
class Vocab:
    tokens: list[str]
    scores: list[float]
    types: list[gguf.TokenType]


def build_vocab() -> Vocab:
    """SPM vocabulary: specials, ChatML controls, all 256 byte-fallback pieces, a few words."""
    tokens: list[str] = []
    scores: list[float] = []
    types: list[gguf.TokenType] = []

    def add(piece: str, score: float, kind: gguf.TokenType) -> None:
        tokens.append(piece)
        scores.append(score)
        types.append(kind)

    add(_SPECIAL[UNK_ID], 0.0, gguf.TokenType.UNKNOWN)
    for piece in (*_SPECIAL[1:], *_CHAT_CONTROL):
        add(piece, 0.0, gguf.TokenType.CONTROL)
    # llama.cpp's SPM tokenizer falls back to these for any text the words do not cover,
    # and finds the newline token among them.
    for byte in range(256):
        add(f"<0x{byte:02X}>", 0.0, gguf.TokenType.BYTE)
    for rank, word in enumerate(_WORDS):
        add(word, -float(rank), gguf.TokenType.NORMAL)
    return Vocab(tokens, scores, types)


def _output_weights(rng: np.random.Generator, vocab: Vocab, n_embd: int) -> np.ndarray:
    """Output projection whose logits favour the word tokens over bytes, controls and EOS.

    Random weights alone would mostly emit byte tokens (256 of ~270), often invalid UTF-8
    that the server holds back, or EOS, ending the reply before any text. Embedding dim 0
    is a large constant (see _embeddings), so after the final RMS norm it is a steady
    positive feature; a positive weight on it gives every word a logit far above the
    zero logits of all other tokens, while the random rest still varies which word wins.
    """
    out = np.zeros((len(vocab.tokens), n_embd), dtype=np.float32)
    words = [i for i, kind in enumerate(vocab.types) if kind == gguf.TokenType.NORMAL]
    out[words, 0] = 2.0
    out[words, 1:] = rng.normal(0.0, 1.0, (len(words), n_embd - 1))
    return out


def _embeddings(rng: np.random.Generator, n_vocab: int, n_embd: int) -> np.ndarray:
    emb = rng.normal(0.0, 0.1, (n_vocab, n_embd)).astype(np.float32)
    emb[:, 0] = 1.0  # the steady feature _output_weights relies on
    return emb


def _tensors(
    rng: np.random.Generator, shape: TinyLlamaShape, vocab: Vocab
) -> Iterator[tuple[str, np.ndarray]]:
    """(name, array) pairs; numpy shapes are GGML's ``ne`` reversed, as gguf-py expects."""
    names = gguf.TENSOR_NAMES
    t = gguf.MODEL_TENSOR
    d, ff = shape.n_embd, shape.n_ff

    def small(*dims: int) -> np.ndarray:
        # Small blocks keep the residual stream close to the embedding, so dim 0 stays dominant.
        return rng.normal(0.0, 0.02, dims).astype(np.float32)

    def ones() -> np.ndarray:
        return np.ones(d, dtype=np.float32)

    yield f"{names[t.TOKEN_EMBD]}.weight", _embeddings(rng, len(vocab.tokens), d)
    for bid in range(shape.n_layer):
        blk: dict[gguf.MODEL_TENSOR, np.ndarray] = {
            t.ATTN_NORM: ones(),
            t.ATTN_Q: small(d, d),
            t.ATTN_K: small(d, d),
            t.ATTN_V: small(d, d),
            t.ATTN_OUT: small(d, d),
            t.FFN_NORM: ones(),
            t.FFN_GATE: small(ff, d),
            t.FFN_UP: small(ff, d),
            t.FFN_DOWN: small(d, ff),
        }
        for kind, array in blk.items():
            yield f"{names[kind].format(bid=bid)}.weight", array
    yield f"{names[t.OUTPUT_NORM]}.weight", ones()
    yield f"{names[t.OUTPUT]}.weight", _output_weights(rng, vocab, d)


def _add_metadata(writer: gguf.GGUFWriter, shape: TinyLlamaShape, vocab: Vocab) -> None:
    writer.add_name(MODEL_NAME)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_vocab_size(len(vocab.tokens))
    writer.add_context_length(shape.context_length)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_layer_norm_rms_eps(1e-5)

    writer.add_tokenizer_model("llama")
    writer.add_token_list(vocab.tokens)
    writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.types)
    writer.add_unk_token_id(UNK_ID)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)


def write_tiny_llama(path: Path, seed: int = 0, shape: TinyLlamaShape | None = None) -> Path:
    """Write the model to ``path`` and return it; the same seed gives the same bytes."""
    shape = shape or TinyLlamaShape()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vocab = build_vocab()
    # Written beside the target and renamed, so a server started on ``path`` never reads half a file.
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    writer = gguf.GGUFWriter(partial, ARCH)
    try:
        _add_metadata(writer, shape, vocab)
        for name, array in _tensors(rng, shape, vocab):
            writer.add_tensor(name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    partial.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.tiny_gguf", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="where to write the .gguf file")
    parser.add_argument("--seed", type=int, default=0, help="random seed for the weights (default: 0)")
    args = parser.parse_args(argv)
    path = write_tiny_llama(args.out, seed=args.seed)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, seed {args.seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
