"""Tokenizers saved as plain `transformers` tokenizer directories (tokenizer.json, no custom code).

Three kinds, all with HyenaDNA's seven special tokens first ([CLS]=0 [SEP]=1 [BOS]=2 [MASK]=3
[PAD]=4 [RESERVED]=5 [UNK]=6), all case-insensitive (soft-masked bases read as upper case):

- `char`: HyenaDNA's CharacterTokenizer ids, A=7 C=8 G=9 T=10 N=11, so official HyenaDNA
  checkpoints and ours read the same ids; any other character is [UNK].
- `kmer`: every ACGT k-mer (k = 1..8) in lexicographic order from id 7 (AAA..A=7, then C, G, T
  as base-4 digits), read at starts 0, stride, 2*stride, ... (stride 1 = overlapping, stride k =
  non-overlapping). A k-mer holding any other base is [UNK]; bases after the last full k-mer are
  left out, so a sequence of n bases gives (n - k) // stride + 1 tokens (none when n < k).
- `bpe`: byte-pair merges learned with `tokenizers` on the pretraining corpus; alphabet ACGTN,
  anything else is [UNK].

`AutoTokenizer.from_pretrained(dir)` loads each one without `trust_remote_code` and its
`tokenizer(seq, add_special_tokens=False)["input_ids"]` equals what the pipeline's bulk encoder
(`encoder_for`) writes. For overlapping k-mers the fast tokenizer needs a chain of regex
normalizers (each base's group is extended by the k - 1 bases that follow it); it is exact but
slow (~0.2 Mbp/s), so the pipeline encodes with numpy (2-bit codes, sliding-window arithmetic)
instead. The kind and its options are stored in tokenizer_config.json under `dnalm_tokenizer`
as plain JSON data, and survive `save_pretrained` of a loaded tokenizer.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dnalm.files import atomic_directory

if TYPE_CHECKING:
    import pandas as pd
    from transformers import PreTrainedTokenizerFast

HYENA_SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]")
HYENA_CHARACTERS = "ACGTN"
TOKENIZER_KINDS = ("char", "kmer", "bpe")
SPEC_KEY = "dnalm_tokenizer"
MAX_K = 8
DEFAULT_MAX_TRAINING_BASES = 10_000_000
DEFAULT_MODEL_MAX_LENGTH = 1_000_000
TRAINING_PIECE = 4096
_OPTIONS = {
    "char": {"kind"},
    "kmer": {"kind", "k", "stride"},
    "bpe": {"kind", "vocab_size", "max_training_bases", "min_frequency"},
}
_BPE_ALPHABET = "ACGTN"

log = logging.getLogger("dnalm.tokenization")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_tokenizer_spec(spec: Mapping[str, Any], name: str = "tokenizer") -> dict[str, Any]:
    """A config entry with its defaults filled in; raises ValueError naming `name` otherwise.

    Called at Snakefile parse time too, so a bad entry fails before any job runs.
    """
    kind = spec.get("kind")
    if kind not in TOKENIZER_KINDS:
        raise ValueError(
            f"{name}: unknown kind {kind!r}; choose one of {', '.join(TOKENIZER_KINDS)}"
        )
    unknown = set(spec) - _OPTIONS[kind]
    if unknown:
        raise ValueError(
            f"{name}: option(s) {', '.join(sorted(unknown))} do not apply to kind {kind!r} "
            f"(it takes {', '.join(sorted(_OPTIONS[kind] - {'kind'})) or 'no options'})"
        )
    out: dict[str, Any] = {"kind": kind}
    if kind == "kmer":
        k = spec.get("k")
        if not _is_int(k) or not 1 <= k <= MAX_K:
            raise ValueError(f"{name}: kmer needs an integer k between 1 and {MAX_K}, got {k!r}")
        stride = spec.get("stride", k)
        if not _is_int(stride) or not 1 <= stride <= k:
            raise ValueError(
                f"{name}: kmer stride must be an integer from 1 (overlapping) to k={k} "
                f"(non-overlapping), got {stride!r}"
            )
        out.update(k=k, stride=stride)
    elif kind == "bpe":
        vocab_size = spec.get("vocab_size")
        floor = len(HYENA_SPECIAL_TOKENS) + len(_BPE_ALPHABET) + 1
        if not _is_int(vocab_size) or vocab_size < floor:
            raise ValueError(
                f"{name}: bpe needs an integer vocab_size of at least {floor} (7 special tokens, "
                f"the alphabet {_BPE_ALPHABET} and one merge), got {vocab_size!r}"
            )
        cap = spec.get("max_training_bases", DEFAULT_MAX_TRAINING_BASES)
        min_frequency = spec.get("min_frequency", 2)
        if not _is_int(cap) or cap < 1:
            raise ValueError(f"{name}: max_training_bases must be a positive integer, got {cap!r}")
        if not _is_int(min_frequency) or min_frequency < 1:
            raise ValueError(
                f"{name}: min_frequency must be a positive integer, got {min_frequency!r}"
            )
        out.update(vocab_size=vocab_size, max_training_bases=cap, min_frequency=min_frequency)
    return out


def _upper_case(characters: str = "acgtn") -> list:
    from tokenizers import normalizers

    return [normalizers.Replace(ch, ch.upper()) for ch in characters]


def _wrap(tok, spec: Mapping[str, Any], model_max_length: int) -> PreTrainedTokenizerFast:
    """A transformers fast tokenizer around a `tokenizers.Tokenizer`, recording its spec."""
    from transformers import PreTrainedTokenizerFast

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
        **{SPEC_KEY: dict(spec)},
    )


def char_vocabulary(characters: str = HYENA_CHARACTERS) -> dict[str, int]:
    """The character tokenizer's token -> id map (HyenaDNA's CharacterTokenizer ids), known
    without building a tokenizer, so a checkpoint's vocabulary can be checked without torch."""
    vocab = {tok: i for i, tok in enumerate(HYENA_SPECIAL_TOKENS)}
    for ch in characters:
        vocab[ch] = len(vocab)
    return vocab


def char_tokenizer(
    characters: str = HYENA_CHARACTERS, model_max_length: int = DEFAULT_MODEL_MAX_LENGTH
) -> PreTrainedTokenizerFast:
    """HyenaDNA-compatible character tokenizer as a `transformers` fast tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    vocab = char_vocabulary(characters)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Replace(ch.lower(), ch) for ch in characters if ch.isalpha()]
    )
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return _wrap(tok, {"kind": "char"}, model_max_length)


def kmer_vocabulary(k: int) -> dict[str, int]:
    """Special tokens, then every ACGT k-mer in base-4 order (A=0 C=1 G=2 T=3, first base most
    significant), which is what the bulk encoder computes arithmetically."""
    vocab = {tok: i for i, tok in enumerate(HYENA_SPECIAL_TOKENS)}
    for kmer in itertools.product("ACGT", repeat=k):
        vocab["".join(kmer)] = len(vocab)
    return vocab


def kmer_tokenizer(
    k: int, stride: int | None = None, model_max_length: int = DEFAULT_MODEL_MAX_LENGTH
) -> PreTrainedTokenizerFast:
    """k-mer tokenizer (see the module docstring) as a `transformers` fast tokenizer.

    Non-overlapping k-mers are a regex split. Overlapping ones cannot come from a split (splits
    partition the text), so the normaliser first rewrites the text: every base becomes a group
    `X|`, then pass j = 1..k-1 appends to each group the first base of the group j places on
    (a lookahead that skips j-1 groups), and the last k-1 groups (no full k-mer) are dropped.
    Any other base becomes `N|` and is never appended, so a group that spans it comes out short
    and one that starts with it holds N: neither is in the vocabulary, so both are [UNK]. The
    pre-tokenizer then keeps every stride-th group.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    spec = check_tokenizer_spec(
        {"kind": "kmer", "k": k, "stride": k if stride is None else stride}, "kmer_tokenizer"
    )
    k, stride = spec["k"], spec["stride"]
    tok = Tokenizer(models.WordLevel(kmer_vocabulary(k), unk_token="[UNK]"))
    steps = _upper_case("acgt")
    if stride == k:
        steps.append(normalizers.Replace(Regex("[^ACGT]"), "N"))
        tok.pre_tokenizer = pre_tokenizers.Split(
            Regex(f"[ACGTN]{{{k}}}"), behavior="removed", invert=True
        )
    else:
        steps.append(normalizers.Replace(Regex("[^ACGT]"), "N|"))
        steps += [normalizers.Replace(b, b + "|") for b in "ACGT"]
        for j in range(1, k):
            steps += [
                normalizers.Replace(Regex(rf"\|(?=(?:[^|]*\|){{{j - 1}}}{b})"), b + "|")
                for b in "ACGT"
            ]
        steps.append(normalizers.Replace(Regex(rf"[^|]*\|(?=(?:[^|]*\|){{0,{k - 2}}}$)"), ""))
        if stride == 1:
            tok.pre_tokenizer = pre_tokenizers.Split("|", behavior="removed")
        else:
            tok.pre_tokenizer = pre_tokenizers.Sequence(
                [
                    pre_tokenizers.Split(Regex(rf"(?:[^|]*\|){{1,{stride}}}"), behavior="isolated"),
                    pre_tokenizers.Split(Regex(r"\|.*"), behavior="removed"),
                ]
            )
    tok.normalizer = normalizers.Sequence(steps)
    tok.decoder = decoders.Fuse()
    return _wrap(tok, spec, model_max_length)


def limit_tokenizer_threads(threads: int) -> None:
    """Keep the Rust tokenizer's thread pool to the job's threads (set before first use)."""
    threads = max(1, int(threads))
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"


def bpe_tokenizer(
    sequences: Iterable[bytes | str],
    vocab_size: int,
    *,
    max_training_bases: int = DEFAULT_MAX_TRAINING_BASES,
    min_frequency: int = 2,
    model_max_length: int = DEFAULT_MODEL_MAX_LENGTH,
) -> PreTrainedTokenizerFast:
    """Byte-pair encoding learned from `sequences` (streamed; stops after max_training_bases).

    Each sequence is one BPE "word" (no pre-tokenizer), upper-cased by the normaliser; the
    alphabet is ACGTN, so every other character is [UNK]. Training sequences longer than
    `TRAINING_PIECE` bases are cut into pieces first: every merge rewrites each word holding the
    pair, and one 350 kb word made a 400 kb training run take 71 s instead of 3 s here, while
    the merges lost at the cuts are negligible. Encoding never cuts.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers

    spec = check_tokenizer_spec(
        {
            "kind": "bpe",
            "vocab_size": vocab_size,
            "max_training_bases": max_training_bases,
            "min_frequency": min_frequency,
        },
        "bpe_tokenizer",
    )
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence(_upper_case("acgtn"))
    tok.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(HYENA_SPECIAL_TOKENS),
        initial_alphabet=list(_BPE_ALPHABET),
        limit_alphabet=len(_BPE_ALPHABET),
        show_progress=False,
    )
    seen = {"bases": 0, "sequences": 0}

    def capped() -> Iterable[str]:
        for seq in sequences:
            if seen["bases"] >= max_training_bases:
                return
            text = seq.decode("ascii") if isinstance(seq, bytes) else seq
            text = text[: max_training_bases - seen["bases"]]
            seen["bases"] += len(text)
            seen["sequences"] += 1
            for start in range(0, len(text), TRAINING_PIECE):
                yield text[start : start + TRAINING_PIECE]

    tok.train_from_iterator(capped(), trainer)
    if seen["bases"] == 0:
        raise ValueError("bpe_tokenizer: no training sequences (the pretraining corpus is empty)")
    size = tok.get_vocab_size()
    log.info(
        "bpe trained on %d sequences, %d bases: %d tokens", seen["sequences"], seen["bases"], size
    )
    if size < vocab_size:
        log.warning(
            "bpe vocabulary has %d tokens, fewer than the %d asked for: the training corpus "
            "(%d bases) has too few repeated pairs (min_frequency %d)",
            size,
            vocab_size,
            seen["bases"],
            min_frequency,
        )
    return _wrap(tok, spec, model_max_length)


def build_tokenizer(
    kind: str, sequences: Iterable[bytes | str] | None = None, **options: Any
) -> PreTrainedTokenizerFast:
    """The tokenizer a config entry names; `sequences` (the training corpus) only for bpe."""
    spec = check_tokenizer_spec({"kind": kind, **options})
    options = {key: value for key, value in spec.items() if key != "kind"}
    if kind == "char":
        return char_tokenizer()
    if kind == "kmer":
        return kmer_tokenizer(**options)
    if sequences is None:
        raise ValueError("a bpe tokenizer is trained: pass the training sequences")
    return bpe_tokenizer(sequences, **options)


def sample_windows(windows: pd.DataFrame, max_bases: int, seed: int = 0) -> pd.DataFrame:
    """A seeded random subset of window rows holding at most `max_bases` bases, in table order.

    Caps the BPE training corpus without favouring the genomes that come first in the table.
    """
    lengths = (windows["end"] - windows["start"]).to_numpy()
    if lengths.sum() <= max_bases:
        return windows
    order = np.random.default_rng(seed).permutation(len(windows))
    keep = order[np.cumsum(lengths[order]) <= max_bases]
    if keep.size == 0:
        keep = order[:1]
    return windows.iloc[np.sort(keep)]


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: str | Path) -> Path:
    """`save_pretrained` through a temporary sibling folder, so a failure leaves no partial files."""
    with atomic_directory(directory) as tmp:
        tokenizer.save_pretrained(tmp)
    return Path(directory)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a saved tokenizer directory without executing any code from it."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)


class SavedTokenizer:
    """What the bulk encoder reads of a saved tokenizer directory, loaded with `tokenizers` alone.

    A corpus job only encodes: loading through `transformers` would import torch, ~5 s of CPU
    per job for nothing. Same vocabulary, special-token ids and `dnalm_tokenizer` entry as
    `load_tokenizer(path)` (tested for every kind).
    """

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer

        directory = Path(path)
        self.name_or_path = str(directory)
        self.backend_tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.init_kwargs = json.loads((directory / "tokenizer_config.json").read_text())
        self.pad_token_id = self._special_id("pad_token")
        self.unk_token_id = self._special_id("unk_token")

    def _special_id(self, key: str) -> int:
        token = self.init_kwargs.get(key)
        if isinstance(token, dict):  # a serialised AddedToken
            token = token.get("content")
        idx = self.backend_tokenizer.token_to_id(token) if isinstance(token, str) else None
        if idx is None:
            raise ValueError(
                f"tokenizer {self.name_or_path!r}: tokenizer_config.json names no {key} that its "
                "vocabulary holds; rebuild the tokenizer with dnalm"
            )
        return int(idx)

    def get_vocab(self) -> dict[str, int]:
        return self.backend_tokenizer.get_vocab(with_added_tokens=True)

    def __len__(self) -> int:
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=True)


def load_encoder(path: str | Path) -> SequenceEncoder:
    """The bulk encoder of a saved tokenizer directory, without importing `transformers`."""
    return SequenceEncoder(SavedTokenizer(path))


def tokenizer_spec(tokenizer: PreTrainedTokenizerFast) -> dict[str, Any]:
    """Kind and options a tokenizer was built with (tokenizers saved before kinds existed are
    character tokenizers)."""
    spec = tokenizer.init_kwargs.get(SPEC_KEY)
    if spec is None:
        if all(len(t) == 1 for t in tokenizer.get_vocab() if t not in HYENA_SPECIAL_TOKENS):
            return {"kind": "char"}
        raise ValueError(
            f"tokenizer {tokenizer.name_or_path!r} records no {SPEC_KEY!r} in its "
            "tokenizer_config.json and is not a character tokenizer: rebuild it with dnalm"
        )
    return check_tokenizer_spec(spec, f"tokenizer {tokenizer.name_or_path!r}")


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


def _as_bytes(sequence: bytes | str) -> bytes:
    return sequence.encode("ascii") if isinstance(sequence, str) else bytes(sequence)


# 2-bit base codes; 4 marks anything that is not A, C, G or T (either case).
_BASE_CODES = np.full(256, 4, dtype=np.uint8)
for _code, _base in enumerate("ACGT"):
    _BASE_CODES[ord(_base)] = _BASE_CODES[ord(_base.lower())] = _code


def kmer_ids(
    sequences: list[bytes | str], k: int, stride: int, offset: int, unk_id: int, dtype: np.dtype
) -> list[np.ndarray]:
    """Token ids of the k-mers at starts 0, stride, ... of every sequence.

    The sequences are concatenated and coded as 2 bits per base (4 = not ACGT); the k-mer value
    at every position is k shifted ORs of those codes, and OR-ing the raw codes flags a window
    that holds a code 4. Each sequence then takes a strided slice of its own positions, so
    windows that cross from one sequence into the next are never used.
    """
    data = [_as_bytes(s) for s in sequences]
    lengths = np.array([len(d) for d in data], dtype=np.int64)
    counts = np.where(lengths >= k, (lengths - k) // stride + 1, 0)
    if counts.sum() == 0:
        return [np.empty(0, dtype=dtype) for _ in data]
    codes = _BASE_CODES[np.frombuffer(b"".join(data), dtype=np.uint8)]
    n = codes.size - k + 1
    values = np.zeros(n, dtype=np.int32)
    flags = np.zeros(n, dtype=np.uint8)
    for j in range(k):
        window = codes[j : j + n]
        values <<= 2
        values |= window & 3
        flags |= window
    values += offset
    values[flags > 3] = unk_id
    ids = values.astype(dtype, copy=False)
    if len(data) == 1 and stride == 1:
        return [ids]
    starts = np.cumsum(lengths) - lengths
    return [
        ids[start : start + (count - 1) * stride + 1 : stride].copy()
        if count
        else np.empty(0, dtype=dtype)
        for start, count in zip(starts.tolist(), counts.tolist(), strict=True)
    ]


class SequenceEncoder:
    """Bulk DNA -> token ids for a saved tokenizer, whatever its kind.

    Corpus building, training and prediction all encode through this one object so that every
    kind works everywhere. `encode` takes a whole window or record at once; `encode_many` is
    faster for many short sequences (one numpy pass, or one Rust batch for bpe). No special
    tokens are added; the ids equal `tokenizer(seq, add_special_tokens=False)["input_ids"]`.
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.spec = tokenizer_spec(tokenizer)
        self.kind: str = self.spec["kind"]
        self.dtype = token_dtype(len(tokenizer))
        self.pad_id = int(tokenizer.pad_token_id)
        self.unk_id = int(tokenizer.unk_token_id)
        if self.kind == "char":
            self.table = lookup_table(tokenizer)
            # one-byte ids: bytes.translate + frombuffer is ~25% faster than a gather and
            # needs no int32 temporary (4 bytes per base)
            self.translation = (
                self.table.astype(np.uint8).tobytes() if self.dtype == np.uint8 else None
            )
        elif self.kind == "kmer":
            self.k, self.stride = self.spec["k"], self.spec["stride"]
            vocab = tokenizer.get_vocab()
            self.offset = vocab.get("A" * self.k, -1)
            kmers = list(kmer_vocabulary(self.k))[len(HYENA_SPECIAL_TOKENS) :]
            if [vocab.get(t) for t in kmers] != list(range(self.offset, self.offset + len(kmers))):
                raise ValueError(
                    f"tokenizer {tokenizer.name_or_path!r}: its vocabulary is not the {self.k}-mer "
                    "vocabulary in base-4 order that its dnalm_tokenizer entry says"
                )
        else:
            from tokenizers import Tokenizer

            # a private copy: transformers may switch padding/truncation on its backend
            self.backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
            self.backend.no_padding()
            self.backend.no_truncation()

    def encode(self, sequence: bytes | str) -> np.ndarray:
        """Token ids of one sequence (no special tokens added)."""
        if self.kind == "char":
            if self.translation is None:
                return encode_bytes(sequence, self.table, self.dtype)
            if isinstance(sequence, str):
                sequence = sequence.encode("ascii")
            return np.frombuffer(bytes(sequence).translate(self.translation), dtype=np.uint8)
        return self.encode_many([sequence])[0]

    def encode_many(self, sequences: list[bytes | str]) -> list[np.ndarray]:
        """Token ids of many sequences."""
        if self.kind == "char":
            return [self.encode(s) for s in sequences]
        if self.kind == "kmer":
            return kmer_ids(sequences, self.k, self.stride, self.offset, self.unk_id, self.dtype)
        texts = [s.decode("ascii") if isinstance(s, bytes) else s for s in sequences]
        return [
            np.asarray(e.ids, dtype=self.dtype)
            for e in self.backend.encode_batch_fast(texts, add_special_tokens=False)
        ]


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


def complement_ids(tokenizer) -> np.ndarray:
    """Token id -> id of its complement (A<->T, C<->G; everything else maps to itself).

    Only a character tokenizer can be reverse-complemented on ids; k-mer and BPE ids would
    have to be decoded and re-encoded, which the training loop does not do.
    """
    kind = tokenizer_spec(tokenizer)["kind"]
    if kind != "char":
        raise ValueError(
            f"rc_augment works on character tokens; tokenizer {tokenizer.name_or_path!r} is "
            f"{kind!r}: set rc_augment: 0 for models with a {kind} tokenizer"
        )
    vocab = tokenizer.get_vocab()
    table = np.arange(max(vocab.values()) + 1, dtype=np.int64)
    for a, b in ("AT", "TA", "CG", "GC"):
        if a in vocab and b in vocab:
            table[vocab[a]] = vocab[b]
    return table


def reverse_complement_rows(
    ids: np.ndarray, mask: np.ndarray, flip: np.ndarray, complement: np.ndarray
) -> None:
    """Reverse-complement, in place, the unpadded part of the rows where `flip` is true."""
    for j in np.flatnonzero(flip):
        n = int(mask[j].sum())
        ids[j, :n] = complement[ids[j, :n][::-1]]
