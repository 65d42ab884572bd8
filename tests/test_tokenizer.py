"""Tokenizer: specials, round trips, files, and the Qwen2 vocab/merges layout."""
import json

import pytest

from uare.tokenizer import SPECIAL_TOKENS, Tokenizer, TokenizerError, train_tokenizer

TEXTS = ["The image is slightly blurry with visible noise.", "Restore this low-light photo, please!",
         "Overall quality: fair. Score 3.2"] * 20


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, 400)


def test_trained_tokenizer_puts_specials_first(tok):
    assert (tok.bos_id, tok.eos_id, tok.vision_start_id, tok.vision_end_id) == (0, 1, 2, 3)
    assert tok.vocab_size <= 400


def test_encode_decode_round_trips_any_unicode(tok):
    text = "Dehaze ünïcode — 画像 ✓ 12.5%"
    ids = tok.encode(text)
    assert all(i >= 4 for i in ids)                     # no specials added by encode
    assert tok.decode(ids) == text


def test_specials_are_single_tokens_and_skipped_on_decode(tok):
    ids = tok.encode("<|im_start|>hi<|im_end|>")
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode(ids) == "hi"


def test_save_and_load_folder(tok, tmp_path):
    tok.save(tmp_path)
    again = Tokenizer.from_folder(tmp_path)
    assert again.encode(TEXTS[0]) == tok.encode(TEXTS[0])


def test_qwen2_vocab_and_merges_with_added_tokens(tok, tmp_path):
    vocab = {k: v for k, v in tok.hf.get_vocab().items() if k not in SPECIAL_TOKENS}
    vocab = {k: i for i, k in enumerate(sorted(vocab, key=vocab.get))}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    model = json.loads(tok.hf.to_str())["model"]
    merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    n = len(vocab)
    added = {str(n + i): {"content": t, "special": True} for i, t in enumerate(["<|endoftext|>", *SPECIAL_TOKENS])}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": added}))
    q = Tokenizer.from_folder(tmp_path)
    assert (q.bos_id, q.eos_id, q.vision_start_id, q.vision_end_id) == (n + 1, n + 2, n + 3, n + 4)
    assert q.decode(q.encode(TEXTS[1])) == TEXTS[1]


def test_missing_or_broken_files_are_named(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer.json"):
        Tokenizer.from_folder(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        Tokenizer.from_folder(tmp_path)
