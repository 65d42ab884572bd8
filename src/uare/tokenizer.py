"""Byte-level BPE tokenizer with UARE's four special tokens (wraps `tokenizers`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer as _HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

BOS, EOS, VISION_START, VISION_END = "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"
SPECIAL_TOKENS = (BOS, EOS, VISION_START, VISION_END)


class TokenizerError(ValueError):
    """A tokenizer file that cannot be used; the message names the file and the reason."""


class Tokenizer:
    """encode/decode plus the ids of the specials (bos = <|im_start|>, eos = <|im_end|>)."""

    def __init__(self, hf: _HFTokenizer, source: str = "<memory>"):
        self.hf = hf
        ids = [hf.token_to_id(t) for t in SPECIAL_TOKENS]
        missing = [t for t, i in zip(SPECIAL_TOKENS, ids) if i is None]
        if missing:
            raise TokenizerError(f"{source}: tokenizer lacks the special tokens {', '.join(missing)}")
        self.bos_id, self.eos_id, self.vision_start_id, self.vision_end_id = ids

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def special_ids(self):
        from .sequence import SpecialIds

        return SpecialIds(self.bos_id, self.eos_id, self.vision_start_id, self.vision_end_id)

    def encode(self, text: str) -> list[int]:
        """Token ids of text, without any special token (the packer adds them)."""
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def save(self, folder: str | Path) -> Path:
        """Writes folder/tokenizer.json (temp name, then rename)."""
        from .imageio import atomic_write

        return atomic_write(Path(folder) / "tokenizer.json", lambda tmp: self.hf.save(str(tmp)))

    @classmethod
    def from_file(cls, path: str | Path) -> "Tokenizer":
        try:
            return cls(_HFTokenizer.from_file(str(path)), str(path))
        except Exception as e:  # tokenizers raises its own exception type on bad JSON
            if isinstance(e, TokenizerError):
                raise
            raise TokenizerError(f"{path}: not a tokenizer.json ({e})") from e

    @classmethod
    def from_folder(cls, folder: str | Path) -> "Tokenizer":
        """tokenizer.json if present, else a Qwen2 vocab.json + merges.txt pair."""
        folder = Path(folder)
        if (folder / "tokenizer.json").exists():
            return cls.from_file(folder / "tokenizer.json")
        if (folder / "vocab.json").exists() and (folder / "merges.txt").exists():
            return _from_qwen2_files(folder)
        raise TokenizerError(f"{folder}: no tokenizer.json, nor vocab.json + merges.txt")


def _byte_level(tok: _HFTokenizer) -> _HFTokenizer:
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def _from_qwen2_files(folder: Path) -> Tokenizer:
    """Qwen2 layout: BPE vocab/merges; specials are added tokens in tokenizer_config.json."""
    try:
        tok = _byte_level(_HFTokenizer(models.BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt"))))
    except Exception as e:
        raise TokenizerError(f"{folder}: unreadable vocab.json/merges.txt ({e})") from e
    added = _added_tokens(folder / "tokenizer_config.json")
    for tid, content in sorted(added.items()):
        tok.add_special_tokens([content])
        if tok.token_to_id(content) != tid:
            raise TokenizerError(f"{folder}/tokenizer_config.json: added token {content!r} should have id {tid}, "
                                 f"got {tok.token_to_id(content)} (gap in the id range?)")
    tok.add_special_tokens([t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None])
    return Tokenizer(tok, str(folder))


def _added_tokens(path: Path) -> dict[int, str]:
    if not path.exists():
        return {}
    try:
        dec = json.loads(path.read_text()).get("added_tokens_decoder", {})
        return {int(k): v["content"] for k, v in dec.items()}
    except (json.JSONDecodeError, KeyError, ValueError, AttributeError) as e:
        raise TokenizerError(f"{path}: bad added_tokens_decoder ({e})") from e


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE trained on texts; the four specials get ids 0..3 (LLMConfig defaults)."""
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size {vocab_size} is below the 256 bytes plus {len(SPECIAL_TOKENS)} specials")
    tok = _byte_level(_HFTokenizer(models.BPE()))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return Tokenizer(tok)
