"""Tokenizers saved as plain `transformers` tokenizer directories (tokenizer.json, no custom code).

The `char` tokenizer reproduces HyenaDNA's CharacterTokenizer ids so that official HyenaDNA
checkpoints and ours read the same token ids: [CLS]=0 [SEP]=1 [BOS]=2 [MASK]=3 [PAD]=4
[RESERVED]=5 [UNK]=6, then A=7 C=8 G=9 T=10 N=11. Lower case (soft-masked) bases map to the same
ids as upper case. Bulk encoding goes through a 256-entry lookup table derived from the saved
vocabulary, so a genome is encoded with one numpy indexing operation, not a Python loop per base.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HYENA_SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]")
HYENA_CHARACTERS = "ACGTN"
TOKENIZER_KINDS = ("char",)


def char_tokenizer(characters: str = HYENA_CHARACTERS, model_max_length: int = 1_000_000):
    """HyenaDNA-compatible character tokenizer as a `transformers` fast tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(HYENA_SPECIAL_TOKENS)}
    for ch in characters:
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Replace(ch.lower(), ch) for ch in characters if ch.isalpha()]
    )
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        cls_token="[CLS]",
        sep_token="[SEP]",
        bos_token="[BOS]",
        mask_token="[MASK]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        model_max_length=model_max_length,
        padding_side="right",
    )


def build_tokenizer(kind: str, **options):
    """The tokenizer a config names; one place to add kmer/bpe."""
    if kind == "char":
        return char_tokenizer(**options)
    raise ValueError(f"unknown tokenizer kind {kind!r}; choose one of {', '.join(TOKENIZER_KINDS)}")


def load_tokenizer(path: str | Path):
    """Load a saved tokenizer directory without executing any code from it."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)


def lookup_table(tokenizer) -> np.ndarray:
    """Byte -> token id table for single-character vocabularies (unknown bytes -> [UNK])."""
    vocab = tokenizer.get_vocab()
    table = np.full(256, tokenizer.unk_token_id, dtype=np.int32)
    for token, idx in vocab.items():
        if len(token) == 1:
            table[ord(token.upper())] = idx
            table[ord(token.lower())] = idx
    return table


def token_dtype(vocab_size: int) -> np.dtype:
    """Smallest unsigned dtype that holds every id (uint8 for HyenaDNA's 12 tokens)."""
    return np.dtype(
        np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 65536 else np.int32
    )


def encode_bytes(
    sequence: bytes | str, table: np.ndarray, dtype: np.dtype | None = None
) -> np.ndarray:
    """Encode a whole sequence at once through the lookup table."""
    if isinstance(sequence, str):
        sequence = sequence.encode("ascii")
    ids = table[np.frombuffer(sequence, dtype=np.uint8)]
    return ids.astype(dtype or token_dtype(int(table.max()) + 1), copy=False)


class SequenceEncoder:
    """Bulk DNA -> token ids for a saved tokenizer, whatever its kind.

    Corpus building, training and prediction all encode through this one object so that a
    tokenizer kind added here works everywhere. `encode` takes a whole window or record at once.
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.kind = "char"
        self.table = lookup_table(tokenizer)
        self.dtype = token_dtype(len(tokenizer))
        self.pad_id = int(tokenizer.pad_token_id)

    def encode(self, sequence: bytes | str) -> np.ndarray:
        """Token ids of one sequence (no special tokens added)."""
        return encode_bytes(sequence, self.table, self.dtype)

    def encode_many(self, sequences: list[bytes | str]) -> list[np.ndarray]:
        """Token ids of many sequences; kinds backed by a Rust tokenizer batch this call."""
        return [self.encode(s) for s in sequences]


def encoder_for(tokenizer) -> SequenceEncoder:
    """The bulk encoder of a loaded tokenizer."""
    return SequenceEncoder(tokenizer)


_COMPLEMENT = bytes.maketrans(
    b"ACGTUNRYKMSWBDHVacgtunrykmswbdhv", b"TGCAANYRMKSWVHDBtgcaanyrmkswvhdb"
)


def reverse_complement(sequence: str | bytes) -> str | bytes:
    """IUPAC-aware reverse complement that keeps case (soft-masking survives); str in, str out."""
    if isinstance(sequence, bytes):
        return sequence.translate(_COMPLEMENT)[::-1]
    return sequence.encode("ascii").translate(_COMPLEMENT)[::-1].decode("ascii")
