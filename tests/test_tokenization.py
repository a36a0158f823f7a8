import numpy as np
import pytest

from dnalm.tokenization import (
    char_tokenizer,
    encode_bytes,
    load_tokenizer,
    lookup_table,
    reverse_complement,
    token_dtype,
)


def test_hyenadna_ids():
    tok = char_tokenizer()
    vocab = tok.get_vocab()
    expected = {
        "[CLS]": 0,
        "[SEP]": 1,
        "[BOS]": 2,
        "[MASK]": 3,
        "[PAD]": 4,
        "[RESERVED]": 5,
        "[UNK]": 6,
        "A": 7,
        "C": 8,
        "G": 9,
        "T": 10,
        "N": 11,
    }
    assert vocab == expected
    assert tok.pad_token_id == 4 and tok.unk_token_id == 6
    assert tok("ACGTN", add_special_tokens=False)["input_ids"] == [7, 8, 9, 10, 11]


def test_lowercase_and_unknown_characters():
    tok = char_tokenizer()
    assert tok("acgtn", add_special_tokens=False)["input_ids"] == [7, 8, 9, 10, 11]
    assert tok("ARY", add_special_tokens=False)["input_ids"] == [7, 6, 6]


def test_save_load_round_trip(tmp_path):
    tok = char_tokenizer()
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").exists()
    again = load_tokenizer(tmp_path)
    seq = "ACGTNacgtnRYK"
    assert (
        again(seq, add_special_tokens=False)["input_ids"]
        == tok(seq, add_special_tokens=False)["input_ids"]
    )
    assert again.decode(tok("ACGTN", add_special_tokens=False)["input_ids"]) == "ACGTN"


def test_bulk_encoding_matches_tokenizer():
    tok = char_tokenizer()
    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGTNacgtnRYKMSWBDHV"), 5000))
    table = lookup_table(tok)
    ids = encode_bytes(seq, table)
    assert ids.dtype == np.uint8
    assert ids.tolist() == tok(seq, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize(("vocab", "dtype"), [(12, np.uint8), (4096, np.uint16), (70000, np.int32)])
def test_token_dtype(vocab, dtype):
    assert token_dtype(vocab) == dtype


def test_reverse_complement_keeps_case_and_iupac():
    assert reverse_complement("AACGTn") == "nACGTT"
    assert reverse_complement("RYKM") == "KMRY"
    assert reverse_complement(reverse_complement("ACGTRYacgt")) == "ACGTRYacgt"
