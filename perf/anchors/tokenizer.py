"""A local text and a BPE tokenizer trained on it, for anchors that insist on a tokenizer.

Both anchors count tokens with a Hugging Face tokenizer and would download one from a hub,
which cannot happen here (and must not: a run should not depend on the network). A small
byte-level BPE trained on a local text loads through ``AutoTokenizer`` like a hub one does.
Its counts are not the server's: pass the anchors' "use the server's usage" flags where they
have them. The text doubles as llama-benchy's "book", from which it cuts its prompts.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Final

from perf.anchors.venvs import AIPERF, CACHE_DIR, ensure_venv, executable

ANCHOR_DATA: Final = CACHE_DIR / "perf-anchors"
VOCAB_SIZE: Final = 4096  # plenty for ~0.5 MB of English; trains in seconds

# Run with the aiperf venv's Python: ``tokenizers`` comes with its transformers, and the
# project's own venv does not have (and should not get) it.
_TRAIN = """
import sys
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

corpus, out, vocab = sys.argv[1], sys.argv[2], int(sys.argv[3])
tok = Tokenizer(models.BPE())
# Byte-level: every string encodes, with no unknown token.
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(
    vocab_size=vocab,
    special_tokens=["<s>", "</s>"],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    show_progress=False,
)
tok.train([corpus], trainer)
tok.save(out)
"""


def ensure_book(path: Path = ANCHOR_DATA / "book.txt") -> Path:
    """~460 kB of English prose from the standard library's own help topics.

    ``pydoc_data`` ships with every CPython, so the text is local, deterministic and long
    enough for prompts of tens of thousands of tokens.
    """
    if not path.exists():
        from pydoc_data.topics import topics

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n\n".join(topics[key] for key in sorted(topics)))
    return path


def ensure_tokenizer(out_dir: Path = ANCHOR_DATA / "tokenizer") -> Path:
    """``out_dir`` holding tokenizer.json and tokenizer_config.json, trained once."""
    config = out_dir / "tokenizer_config.json"
    if (out_dir / "tokenizer.json").exists() and config.exists():
        return out_dir
    ensure_venv(AIPERF)
    out_dir.mkdir(parents=True, exist_ok=True)
    python = str(executable(AIPERF, "python"))
    tokenizer_json = str(out_dir / "tokenizer.json")
    subprocess.run([python, "-c", _TRAIN, str(ensure_book()), tokenizer_json, str(VOCAB_SIZE)], check=True)
    # The class name is all AutoTokenizer needs to load tokenizer.json without a model config.
    settings = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>"}
    config.write_text(json.dumps(settings))
    return out_dir
