import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SHARED_DATA, require_data
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from dnalm.models import config_for
from dnalm.predict import predict_fasta
from dnalm.tokenization import (
    SPEC_KEY,
    bpe_tokenizer,
    build_tokenizer,
    char_tokenizer,
    check_tokenizer_spec,
    encode_bytes,
    encoder_for,
    kmer_tokenizer,
    load_encoder,
    load_tokenizer,
    lookup_table,
    reverse_complement,
    sample_windows,
    save_tokenizer,
    token_dtype,
    tokenizer_spec,
)

SPECIALS = ["[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]"]
MICRO_HYENA = {"arch": "hyena", "size": "micro", "max_seq_len": 256}


def reference_kmers(seq: str, k: int, stride: int) -> list[int]:
    """k-mer ids written out the slow, obvious way."""
    seq = seq.upper()
    out = []
    for start in range(0, len(seq) - k + 1, stride):
        kmer = seq[start : start + k]
        if set(kmer) <= set("ACGT"):
            out.append(7 + sum("ACGT".index(b) * 4 ** (k - 1 - j) for j, b in enumerate(kmer)))
        else:
            out.append(6)
    return out


def hf_ids(tokenizer, seq: str) -> list[int]:
    return tokenizer(seq, add_special_tokens=False)["input_ids"]


def read_plain(path: Path, limit: int) -> str:
    """The first `limit` bases of a (gzipped) FASTA, records joined."""
    opener = gzip.open if path.suffix == ".gz" else open
    parts, size = [], 0
    with opener(path, "rt") as handle:
        for line in handle:
            if line.startswith(">"):
                continue
            parts.append(line.strip())
            size += len(parts[-1])
            if size >= limit:
                break
    return "".join(parts)[:limit]


@pytest.fixture(scope="module")
def ecoli() -> str:
    path = SHARED_DATA / "genomes/nonviral/Ecoli_K12_MG1655_NC_000913.3.fna.gz"
    require_data(path)
    return read_plain(path, 400_000)


@pytest.fixture(scope="module")
def ecoli_bpe(ecoli):
    windows = [ecoli[i : i + 1000] for i in range(0, 300_000, 1000)]
    return bpe_tokenizer(windows, 512)


# ---- char ------------------------------------------------------------------------------------
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


@pytest.mark.parametrize("kind", ["char", "kmer3", "kmer6x6", "bpe"])
def test_light_encoder_equals_transformers_one(tmp_path, kind):
    """The corpus jobs' encoder, read with `tokenizers` alone, is the one `transformers` gives."""
    rng = np.random.default_rng(1)
    seqs = ["".join(rng.choice(list("ACGTACGTacgtNRy"), n)) for n in (0, 1, 5, 97, 1000)]
    make = {
        "char": char_tokenizer,
        "kmer3": lambda: kmer_tokenizer(3, 1),
        "kmer6x6": lambda: kmer_tokenizer(6, 6),
        "bpe": lambda: bpe_tokenizer([s.upper() for s in seqs] * 4, 40),
    }[kind]
    save_tokenizer(make(), tmp_path / "tok")
    heavy, light = encoder_for(load_tokenizer(tmp_path / "tok")), load_encoder(tmp_path / "tok")
    for attr in ("kind", "spec", "dtype", "pad_id", "unk_id"):
        assert getattr(light, attr) == getattr(heavy, attr), attr
    assert len(light.tokenizer) == len(heavy.tokenizer)
    assert light.tokenizer.get_vocab() == heavy.tokenizer.get_vocab()
    for a, b in zip(light.encode_many(seqs), heavy.encode_many(seqs), strict=True):
        assert a.dtype == b.dtype and a.tolist() == b.tolist()


def test_light_encoder_does_not_import_torch(tmp_path):
    save_tokenizer(kmer_tokenizer(2, 1), tmp_path / "tok")
    code = (
        "import sys; from dnalm.tokenization import load_encoder; "
        f"e = load_encoder({str(tmp_path / 'tok')!r}); "
        "print(e.kind, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["kmer", "False", "False"]


def test_light_encoder_names_a_broken_config(tmp_path):
    save_tokenizer(char_tokenizer(), tmp_path / "tok")
    config_path = tmp_path / "tok" / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["pad_token"] = "[NOPE]"
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"tokenizer_config.json names no pad_token that its"):
        load_encoder(tmp_path / "tok")


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


# ---- kmer ------------------------------------------------------------------------------------
def test_kmer_vocabulary_ids():
    tok = kmer_tokenizer(3, 1)
    vocab = tok.get_vocab()
    assert len(tok) == 7 + 4**3
    assert [vocab[s] for s in SPECIALS] == list(range(7))
    assert (vocab["AAA"], vocab["AAC"], vocab["CGT"], vocab["TTT"]) == (7, 8, 7 + 16 + 8 + 3, 70)
    assert tok.pad_token_id == 4 and tok.unk_token_id == 6
    assert encoder_for(tok).dtype == np.uint8
    assert encoder_for(kmer_tokenizer(6)).dtype == np.uint16
    assert encoder_for(kmer_tokenizer(8, 8)).dtype == np.int32  # 7 + 65,536 ids


@pytest.mark.parametrize(
    ("k", "stride"), [(1, 1), (2, 1), (3, 1), (3, 2), (3, 3), (5, 2), (6, 1), (6, 4), (6, 6)]
)
def test_kmer_saved_tokenizer_equals_bulk_encoder(tmp_path, k, stride):
    rng = np.random.default_rng(k * 10 + stride)
    alphabet = list("ACGTACGTACGTacgtNnRy")
    seqs = ["".join(rng.choice(alphabet, n)) for n in [*range(0, 2 * k + 3), 97, 500, 2001]]
    save_tokenizer(kmer_tokenizer(k, stride), tmp_path / "tok")
    loaded = AutoTokenizer.from_pretrained(str(tmp_path / "tok"), trust_remote_code=False)
    encoder = encoder_for(loaded)
    assert (encoder.kind, encoder.k, encoder.stride) == ("kmer", k, stride)
    many = encoder.encode_many(seqs)
    for seq, ids in zip(seqs, many, strict=True):
        expected = reference_kmers(seq, k, stride)
        assert ids.tolist() == expected, seq
        assert encoder.encode(seq).tolist() == expected
        assert encoder.encode(seq.encode("ascii")).tolist() == expected
        assert hf_ids(loaded, seq) == expected, seq


def test_overlapping_and_non_overlapping_counts():
    seq = "ACGT" * 25  # 100 bases
    counts = {s: len(encoder_for(kmer_tokenizer(6, s)).encode(seq)) for s in (1, 2, 3, 6)}
    assert counts == {1: 95, 2: 48, 3: 32, 6: 16}  # (100 - 6) // stride + 1
    assert len(encoder_for(kmer_tokenizer(6, 1)).encode("ACGTA")) == 0  # shorter than k
    overlapping = encoder_for(kmer_tokenizer(6, 1)).encode(seq)
    assert (encoder_for(kmer_tokenizer(6, 6)).encode(seq) == overlapping[::6]).all()


def test_kmer_n_and_case_handling():
    tok = kmer_tokenizer(3, 1)
    enc = encoder_for(tok)
    acg, cgt = tok.convert_tokens_to_ids(["ACG", "CGT"])
    assert enc.encode("ACGNACGT").tolist() == [acg, 6, 6, 6, acg, cgt]
    assert enc.encode("acgnAcGt").tolist() == enc.encode("ACGNACGT").tolist()
    assert enc.encode("ACGRACGT").tolist() == [acg, 6, 6, 6, acg, cgt]  # any non-ACGT base
    assert hf_ids(tok, "acgnAcGt") == [acg, 6, 6, 6, acg, cgt]
    # a window never straddles two sequences of one batch
    assert [a.tolist() for a in enc.encode_many(["AC", "GT", "ACGT", ""])] == [
        [],
        [],
        [acg, cgt],
        [],
    ]


# ---- bpe -------------------------------------------------------------------------------------
def test_bpe_trained_on_a_real_genome(ecoli, ecoli_bpe):
    tok = ecoli_bpe
    vocab = tok.get_vocab()
    assert len(tok) == 512
    assert [vocab[s] for s in SPECIALS] == list(range(7))
    assert {"A", "C", "G", "T", "N"} <= set(vocab)
    assert tokenizer_spec(tok)["vocab_size"] == 512
    encoder = encoder_for(tok)
    assert encoder.kind == "bpe" and encoder.dtype == np.uint16 and encoder.pad_id == 4
    held_out = [ecoli[i : i + 1000] for i in range(300_000, 400_000, 1000)]
    tokens = sum(len(ids) for ids in encoder.encode_many(held_out))
    assert tokens < 0.5 * 100_000  # compresses unseen DNA of the same genome
    assert encoder.encode(held_out[0].lower()).tolist() == encoder.encode(held_out[0]).tolist()
    assert 6 in encoder.encode("ACGTRACGT").tolist()  # outside the alphabet ACGTN: [UNK]
    assert encoder.encode("NNNN").size >= 1 and 6 not in encoder.encode("NNNN").tolist()


def test_bpe_training_stops_at_the_base_cap(ecoli):
    windows = [ecoli[i : i + 2000] for i in range(0, 300_000, 2000)]
    small = bpe_tokenizer(windows, 300, max_training_bases=20_000)
    big = bpe_tokenizer(windows, 300, max_training_bases=300_000)
    sample = ecoli[300_000:310_000]
    # a vocabulary learned from 20 kb compresses worse than one from 400 kb
    assert len(encoder_for(small).encode(sample)) > len(encoder_for(big).encode(sample))
    with pytest.raises(ValueError, match="no training sequences"):
        bpe_tokenizer([], 300)


def test_sample_windows_is_seeded_capped_and_in_table_order():
    windows = pd.DataFrame({"start": np.arange(100) * 10, "end": np.arange(100) * 10 + 10})
    assert sample_windows(windows, 10_000) is windows
    picked = sample_windows(windows, 205)
    assert (picked["end"] - picked["start"]).sum() <= 205 and len(picked) == 20
    assert picked.index.is_monotonic_increasing
    assert picked.index.tolist() == sample_windows(windows, 205).index.tolist()
    assert picked.index.tolist() != list(range(20))  # not just the first rows


# ---- every kind ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def every_kind(ecoli_bpe):
    return {
        "char": char_tokenizer(),
        "kmer6": kmer_tokenizer(6, 1),
        "kmer4s4": kmer_tokenizer(4, 4),
        "kmer5s2": kmer_tokenizer(5, 2),
        "bpe": ecoli_bpe,
    }


def test_every_kind_round_trips_and_matches_on_real_sequences(tmp_path, shared_data, every_kind):
    viral = read_plain(shared_data / "genomes/viral/viral_reference_genomes.fasta", 20_000)
    rubella = read_plain(  # a run of N and IUPAC codes
        shared_data / "genomes/viral/nextclade_isolates/nextstrain__rubella__E1.fasta", 160_000
    )[140_000:]
    human = read_plain(  # soft-masked (lower case) after a run of N
        shared_data / "genomes/nonviral/Hsapiens_hg38_chr2_1-2333275.fa.gz", 30_000
    )[8_000:]
    assert set(rubella) - set("ACGTN") and set(human) & set("acgt") and "N" in human
    seqs = [viral, rubella, human] + [human[i : i + 700] for i in range(0, 10_000, 700)]
    for name, tok in every_kind.items():
        directory = save_tokenizer(tok, tmp_path / name)
        config = json.loads((directory / "tokenizer_config.json").read_text())
        assert config[SPEC_KEY] == tokenizer_spec(tok)
        loaded = load_tokenizer(directory)
        # a loaded tokenizer saved again (as training does beside a model) keeps its kind
        loaded.save_pretrained(tmp_path / f"{name}-again")
        again = load_tokenizer(tmp_path / f"{name}-again")
        encoder = encoder_for(again)
        assert encoder.kind == tokenizer_spec(tok)["kind"]
        assert len(again) == len(tok) and again.get_vocab() == tok.get_vocab()
        many = encoder.encode_many(seqs)
        for seq, ids in zip(seqs, many, strict=True):
            assert ids.dtype == token_dtype(len(tok))
            assert ids.tolist() == hf_ids(loaded, seq), name
            assert ids.tolist() == encoder.encode(seq).tolist(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


@pytest.mark.parametrize("name", ["char", "kmer6", "kmer4s4", "bpe"])
def test_micro_hyena_embeds_each_vocabulary(every_kind, name):
    tok = every_kind[name]
    encoder = encoder_for(tok)
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(config_for(MICRO_HYENA, tok))
    assert lm.config.vocab_size >= len(tok) and lm.config.pad_token_id == 4
    rng = np.random.default_rng(0)
    ids = encoder.encode_many(["".join(rng.choice(list("ACGT"), 200)) for _ in range(2)])
    width = min(len(i) for i in ids)
    batch = torch.from_numpy(np.stack([i[:width] for i in ids]).astype(np.int64))
    out = lm(input_ids=batch, labels=batch)
    assert out.logits.shape[:2] == (2, width) and out.logits.shape[2] >= len(tok)
    assert torch.isfinite(out.loss) and out.loss.item() > 0


def test_predict_with_a_kmer_model(tmp_path):
    tok = kmer_tokenizer(3, 1)
    torch.manual_seed(0)
    cfg = config_for(MICRO_HYENA, tok, num_labels=2)
    cfg.update({"id2label": {0: "host", 1: "virus"}, "label2id": {"host": 0, "virus": 1}})
    model = AutoModelForSequenceClassification.from_config(cfg).eval()
    rng = np.random.default_rng(2)
    long = "".join(rng.choice(list("ACGT"), 250))
    fasta = tmp_path / "contigs.fa"
    fasta.write_text(f">long\n{long}\n>mid\n{long[:60]}\n>tiny\nAC\n")
    out, win = tmp_path / "records.tsv", tmp_path / "windows.tsv"
    assert predict_fasta(model, tok, fasta, out, window=100, stride=100, out_windows=win) == 3
    windows = pd.read_csv(win, sep="\t")
    assert windows["record"].tolist() == ["long"] * 3 + ["mid", "tiny"]
    # padded batch == each window alone: padding never changes a window's score
    encoder = encoder_for(tok)
    with torch.no_grad():
        for (_, row), seq in zip(
            windows.iterrows(), [long[0:100], long[100:200], long[150:250], long[:60]], strict=False
        ):
            ids = torch.from_numpy(encoder.encode(seq).astype(np.int64))[None]
            alone = torch.softmax(model(input_ids=ids).logits, -1)[0, 1].item()
            assert row["prob_virus"] == pytest.approx(alone, abs=1e-4)
    assert np.isfinite(windows["prob_virus"]).all()  # "AC" (no 3-mer) is read as one [UNK]


# ---- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "word"}, "unknown kind 'word'"),
        ({"kind": "char", "k": 3}, "do not apply to kind 'char'"),
        ({"kind": "kmer"}, "integer k between 1 and 8"),
        ({"kind": "kmer", "k": 9}, "integer k between 1 and 8"),
        ({"kind": "kmer", "k": 4, "stride": 5}, "stride must be an integer from 1"),
        ({"kind": "kmer", "k": 4, "vocab_size": 50}, "do not apply to kind 'kmer'"),
        ({"kind": "bpe"}, "vocab_size of at least 13"),
        ({"kind": "bpe", "vocab_size": 100, "max_training_bases": 0}, "max_training_bases"),
    ],
)
def test_bad_specs_name_the_entry(spec, message):
    with pytest.raises(ValueError, match=message) as err:
        check_tokenizer_spec(spec, "tokenizers: 'mine'")
    assert "tokenizers: 'mine'" in str(err.value)


def test_specs_get_their_defaults_and_bpe_needs_data():
    assert check_tokenizer_spec({"kind": "kmer", "k": 6}) == {"kind": "kmer", "k": 6, "stride": 6}
    spec = check_tokenizer_spec({"kind": "bpe", "vocab_size": 64})
    assert spec["max_training_bases"] == 10_000_000 and spec["min_frequency"] == 2
    with pytest.raises(ValueError, match="pass the training sequences"):
        build_tokenizer("bpe", vocab_size=64)
    assert len(build_tokenizer("kmer", k=2, stride=1)) == 7 + 16


def test_encoder_rejects_a_vocabulary_that_does_not_match_its_spec(tmp_path):
    save_tokenizer(kmer_tokenizer(3), tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config[SPEC_KEY]["k"] = 4
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not the 4-mer vocabulary"):
        encoder_for(load_tokenizer(tmp_path))
    del config[SPEC_KEY]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="records no 'dnalm_tokenizer'"):
        encoder_for(load_tokenizer(tmp_path))
