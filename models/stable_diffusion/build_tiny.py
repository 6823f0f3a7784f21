"""Writes a tiny, randomly initialised Stable Diffusion pipeline for CPU tests and demos.

Every part is the real class a full Stable Diffusion 1.x checkpoint uses, built from a small
config instead of downloaded weights, so that the Triton model's tensor plumbing, the
text-to-image contract and the image encoding are exercised for real. With random weights
the pipeline draws noise. Run by `make`; its output, `tiny/`, is git-ignored.

    python models/stable_diffusion/build_tiny.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

OUT_DIR = Path(__file__).resolve().parent / "tiny"
SEED = 0
# Stable Diffusion 1.x tokenises to 77 positions; the text encoder's context must match.
MAX_TOKENS = 77
HIDDEN = 32
BLOCKS = (32, 64)
LATENT_CHANNELS = 4


def byte_chars() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes, which byte-level BPE vocabularies start from."""
    ranges = (("!", "~"), ("¡", "¬"), ("®", "ÿ"))
    printable = [byte for low, high in ranges for byte in range(ord(low), ord(high) + 1)]
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def tokenizer() -> CLIPTokenizer:
    """Single-character tokens only (no merges): every prompt tokenises, one token per byte."""
    special = ["<|startoftext|>", "<|endoftext|>"]
    tokens = [*special, *byte_chars(), *(char + "</w>" for char in byte_chars())]
    vocab = {token: index for index, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=MAX_TOKENS)


def text_encoder(vocab_size: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        intermediate_size=HIDDEN * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config)


def unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        block_out_channels=BLOCKS,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=HIDDEN,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=BLOCKS,
        down_block_types=("DownEncoderBlock2D",) * len(BLOCKS),
        up_block_types=("UpDecoderBlock2D",) * len(BLOCKS),
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=32,
        sample_size=64,
    )


def build(out_dir: Path) -> None:
    torch.manual_seed(SEED)
    words = tokenizer()
    pipeline = StableDiffusionPipeline(
        vae=vae(),
        text_encoder=text_encoder(len(words)),
        tokenizer=words,
        unet=unet(),
        scheduler=DDIMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(out_dir)


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1]) if len(argv) > 1 else OUT_DIR
    build(out_dir)
    print(f"tiny Stable Diffusion pipeline written to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
