"""Writes a tiny, randomly initialised GPT-2 and its tokenizer for CPU tests and demos.

The model is the real `GPT2LMHeadModel` class, built from a small config instead of downloaded
weights, and the tokenizer a real byte-level BPE (GPT-2's scheme: every byte is a token, so
every prompt tokenises), trained here on the few sentences below. So the Triton model's whole
path runs for real: tokenise, generate token by token with a KV cache, detokenise, stream. With
random weights it writes nonsense. Run by `make`; its output, `tiny/`, is git-ignored.

    python models/text_generation/build_tiny.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

OUT_DIR = Path(__file__).resolve().parent / "tiny"
SEED = 0
END = "<|endoftext|>"
VOCAB_SIZE = 384
CONTEXT = 512
HIDDEN = 32
# What the merges are learnt from: any fixed text will do, the weights are random anyway.
CORPUS = [
    "Triton serves models over HTTP and gRPC; the gateway spreads requests over the nodes.",
    "A decoupled model may send many responses to one request, then the final flag.",
    "The generate endpoint maps the fields of a JSON body to the input tensors by name.",
    "Each token is sent as soon as it is decoded, so that the client reads the text as it grows.",
    "hello world, hi there, what is the time? It is a quarter past nine in the morning.",
]


def tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE: the 256 byte tokens, END, and merges learnt from CORPUS."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=END, eos_token=END, model_max_length=CONTEXT
    )


def unprintable(words: PreTrainedTokenizerFast) -> list[int]:
    """Tokens whose text is a control character or a lone byte of a multi-byte character."""
    texts = {index: words.decode([index]) for index in range(len(words))}
    return [index for index, text in texts.items() if not text.isprintable() or "\ufffd" in text]


def model(words: PreTrainedTokenizerFast) -> GPT2LMHeadModel:
    end = words.convert_tokens_to_ids(END)
    config = GPT2Config(
        vocab_size=len(words),
        n_positions=CONTEXT,
        n_embd=HIDDEN,
        n_layer=2,
        n_head=2,
        # Tied random embeddings make greedy decoding repeat the prompt's last token forever.
        tie_word_embeddings=False,
        bos_token_id=end,
        eos_token_id=end,
    )
    lm = GPT2LMHeadModel(config).eval()
    # A trained model has learnt not to write these; a random one is told (generation config).
    lm.generation_config.suppress_tokens = unprintable(words)
    return lm


def build(out_dir: Path) -> None:
    torch.manual_seed(SEED)
    words = tokenizer()
    words.save_pretrained(out_dir)
    # The weights last: `make` takes their file as the sign of a finished build.
    model(words).save_pretrained(out_dir)


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1]) if len(argv) > 1 else OUT_DIR
    build(out_dir)
    print(f"tiny GPT-2 and tokenizer written to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
