"""`dnalm predict`: streaming windows, scores, outputs, errors and flat memory."""

import gzip
import json
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForSequenceClassification

from dnalm.cli import main as cli_main
from dnalm.fasta import FastaFormatError
from dnalm.model_dir import TRAINING_INFO, load_classifier, write_training_info
from dnalm.models import model_config
from dnalm.predict import predict_fasta, record_windows, stream_windows
from dnalm.tokenization import char_tokenizer, kmer_tokenizer

LABELS = {"id2label": {0: "host", 1: "virus"}, "label2id": {"host": 0, "virus": 1}}


def _save_model(model_dir, max_seq_len=128, window=100, **overrides):
    tok = char_tokenizer()
    torch.manual_seed(0)
    cfg = model_config(
        "hyena", "micro", vocab_size=12, pad_token_id=4, max_seq_len=max_seq_len, **overrides
    )
    cfg.update(LABELS)
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    write_training_info(model_dir, window_length=window, labels=["host", "virus"])
    return model_dir


def _random_dna(rng, n):
    return rng.choice(np.frombuffer(b"ACGT", np.uint8), n).tobytes().decode()


def _write_fasta(path, records, width=80):
    with open(path, "w") as fh:
        for name, seq in records:
            fh.write(f">{name} description\n")
            fh.writelines(seq[i : i + width] + "\n" for i in range(0, len(seq), width))
    return path


def test_predict_fasta_and_cli(tmp_path):
    model_dir = _save_model(tmp_path / "model")
    rng = np.random.default_rng(1)
    fasta = tmp_path / "contigs.fa.gz"
    with gzip.open(fasta, "wt") as fh:
        long_seq = _random_dna(rng, 250)
        fh.write(">long\n" + long_seq + "\n>short\nACGTAC\n")

    model, tokenizer = load_classifier(model_dir, torch.device("cpu"))
    out, win, bed = tmp_path / "records.tsv", tmp_path / "windows.tsv", tmp_path / "windows.bed"
    n = predict_fasta(
        model,
        tokenizer,
        fasta,
        out,
        window=100,
        stride=100,
        batch_size=3,  # batches that straddle the two records
        out_windows=win,
        out_bed=bed,
        progress=False,
    )
    assert n == 2
    records = pd.read_csv(out, sep="\t")
    windows = pd.read_csv(win, sep="\t")
    assert records["record"].tolist() == ["long", "short"]
    assert records["length"].tolist() == [250, 6]
    assert records["windows"].tolist() == [3, 1]
    assert windows[["start", "end"]].values.tolist() == [[0, 100], [100, 200], [150, 250], [0, 6]]
    long = windows[windows["record"] == "long"]
    # each window scored on its own, outside predict's batching, padding and streaming
    virus = model.config.label2id["virus"]
    for w in long.itertuples():
        ids = torch.tensor([tokenizer.convert_tokens_to_ids(list(long_seq[w.start : w.end]))])
        with torch.no_grad():
            alone = torch.softmax(model(input_ids=ids).logits, dim=-1)[0, virus]
        assert w.prob_virus == pytest.approx(float(alone), abs=1e-5)
    assert records.loc[0, "prob_virus"] == pytest.approx(long["prob_virus"].mean(), abs=1e-5)
    assert records.loc[0, "max_virus"] == pytest.approx(long["prob_virus"].max(), abs=1e-5)
    # the end window overlaps its neighbour by 50 bases: only its 50 new bases count
    weighted = np.average(long["prob_virus"], weights=[100, 100, 50])
    assert records.loc[0, "weighted_virus"] == pytest.approx(weighted, abs=1e-5)
    assert records.loc[0, "predicted"] == (
        "virus" if records.loc[0, "prob_virus"] > 0.5 else "host"
    )

    rows = [line.split("\t") for line in bed.read_text().splitlines()]
    assert [r[:3] for r in rows] == [
        [r, str(s), str(e)] for r, s, e in windows[["record", "start", "end"]].values
    ]
    for r, (_, w) in zip(rows, windows.iterrows(), strict=True):
        assert int(r[4]) == round(w["prob_virus"] * 1000) and r[5] == "."
        assert r[3] == ("virus" if w["prob_virus"] > w["prob_host"] else "host")

    cli_out = tmp_path / "cli.tsv"
    argv = ["predict", "--model", str(model_dir), "--fasta", str(fasta), "--out", str(cli_out)]
    assert cli_main([*argv, "--quiet", "--bed-out", str(tmp_path / "cli.bed")]) == 0
    assert pd.read_csv(cli_out, sep="\t").equals(records)
    assert (tmp_path / "cli.bed").read_text() == bed.read_text()


def test_predict_rejects_bad_input_and_leaves_nothing(tmp_path, capsys):
    tok = char_tokenizer()
    cfg = model_config("hyena", "micro", vocab_size=12, pad_token_id=4, max_seq_len=128)
    model_dir = tmp_path / "model"
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(model_dir)
    bad = tmp_path / "bad.fa"
    bad.write_text(">a\nACGT\n>b\nACGT\nACXT\n")
    out = tmp_path / "out.tsv"
    argv = ["predict", "--model", str(model_dir), "--fasta", str(bad), "--out", str(out)]
    assert cli_main([*argv, "--window", "50"]) == 2  # no tokenizer beside the model
    assert "no tokenizer.json" in capsys.readouterr().err
    tok.save_pretrained(model_dir)
    bed = tmp_path / "w.bed"
    assert cli_main([*argv, "--window", "50", "--quiet", "--bed-out", str(bed)]) == 2
    err = capsys.readouterr().err
    assert "record 'b'" in err and "line 5" in err and "column 3" in err and "position 7" in err
    assert not out.exists() and not bed.exists() and not list(tmp_path.glob("*.tmp"))
    # a window longer than the model accepts is refused before anything is written
    assert cli_main([*argv, "--window", "500", "--quiet"]) == 2
    assert "at most 128" in capsys.readouterr().err
    assert not out.exists()


def test_tokenizer_mismatch_is_caught(tmp_path):
    model_dir = _save_model(tmp_path / "model")
    load_classifier(model_dir, torch.device("cpu"))
    # same size limit, another kind: a 1-mer tokenizer has 11 tokens, fewer than the 12 embedded
    kmer_tokenizer(1).save_pretrained(model_dir)
    with pytest.raises(ValueError, match=r"do not belong together.*kmer"):
        load_classifier(model_dir, torch.device("cpu"))
    kmer_tokenizer(3).save_pretrained(model_dir)  # 71 tokens
    with pytest.raises(ValueError, match="71 tokens but the model embeds only 12"):
        load_classifier(model_dir, torch.device("cpu"))
    # a model without training info still gets the vocabulary-size check
    (model_dir / TRAINING_INFO).unlink()
    with pytest.raises(ValueError, match="embeds only 12"):
        load_classifier(model_dir, torch.device("cpu"))
    # same kind and size but another vocabulary order (a different char tokenizer)
    _save_model(model_dir)
    char_tokenizer(characters="TGCAN").save_pretrained(model_dir)
    with pytest.raises(ValueError, match="fingerprint"):
        load_classifier(model_dir, torch.device("cpu"))


def test_record_windows():
    assert record_windows(10, 100, 50) == [(0, 10)]
    assert record_windows(100, 100, 50) == [(0, 100)]
    assert record_windows(230, 100, 100) == [(0, 100), (100, 200), (130, 230)]
    assert record_windows(200, 100, 50) == [(0, 100), (50, 150), (100, 200)]


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 400), min_size=1, max_size=4),
    window=st.integers(1, 120),
    stride=st.integers(1, 150),
    width=st.integers(1, 90),
    chunk=st.integers(1, 200),
)
def test_stream_windows_match_whole_records(
    tmp_path_factory, lengths, window, stride, width, chunk
):
    """Chunked reading cuts exactly the windows `record_windows` cuts from the whole record."""
    rng = np.random.default_rng(sum(lengths) + window)
    records = [(f"r{i}", _random_dna(rng, n)) for i, n in enumerate(lengths)]
    path = _write_fasta(tmp_path_factory.mktemp("s") / "x.fa", records, width)
    got = list(stream_windows(path, window, stride, chunk_bases=chunk))
    expected = [
        (name, s, e, seq[s:e])
        for name, seq in records
        for s, e in record_windows(len(seq), window, stride)
    ]
    assert [(w.record, w.start, w.end, w.seq.decode()) for w in got] == expected
    ends = [w for w in got if w.length is not None]
    assert [(w.record, w.length) for w in ends] == [(n, len(s)) for n, s in records]


def test_stream_windows_errors(tmp_path):
    bad = _write_fasta(tmp_path / "bad.fa", [("a", "ACGT" * 10), ("b", "A" * 33 + "Z")], width=10)
    with pytest.raises(FastaFormatError) as err:
        list(stream_windows(bad, 8, 8, chunk_bases=7))
    assert (err.value.record, err.value.position, err.value.line, err.value.column) == (
        "b",
        34,
        10,
        4,
    )
    dup = _write_fasta(tmp_path / "dup.fa", [("a", "ACGT"), ("a", "ACGT")])
    with pytest.raises(FastaFormatError, match="duplicate record id 'a'"):
        list(stream_windows(dup, 8, 8))
    empty = tmp_path / "empty.fa"
    empty.write_text(">a\nACGT\n>b\n>c\nAC\n")
    with pytest.raises(FastaFormatError, match="record 'b', line 3: record has a header but no"):
        list(stream_windows(empty, 8, 8))
    truncated = tmp_path / "t.fa.gz"
    truncated.write_bytes(gzip.compress(b">a\n" + b"ACGT" * 5000)[:-20])
    with pytest.raises(FastaFormatError, match="truncated or corrupt gzip"):
        list(stream_windows(truncated, 8, 8))


def _traced_peak(fn) -> float:
    """Peak Python + numpy heap (MB) while `fn` runs (torch's own allocator is not traced)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def _memory_inputs(tmp_path, rng):
    """A model of 1,000-base windows, and the FASTAs of two 750 kbp records (few) and of 3,000
    contigs of 500 bases (many), for the memory tests of predict and embed."""
    model_dir = _save_model(
        tmp_path / "model", max_seq_len=1024, window=1000, d_model=16, n_layer=1, d_inner=32
    )
    fastas = {}
    for name, n, length in (("few", 2, 750_000), ("many", 3000, 500)):
        records = [(f"c{i}", _random_dna(rng, length)) for i in range(n)]
        fastas[name] = _write_fasta(tmp_path / f"{name}.fa", records)
    return model_dir, fastas


def _memory_peaks(fastas, run) -> dict[str, float]:
    """The peak traced memory (MB) of `run(name, fasta)` for each FASTA of `_memory_inputs`."""
    return {name: _traced_peak(lambda n=name, p=path: run(n, p)) for name, path in fastas.items()}


def test_memory_stays_flat(tmp_path):
    """An 8 Mbp record held whole would alone take 8 MB as a string (and more as lines); the
    stream keeps one chunk, so its peak does not grow with the record. Many small records cost
    no more than a few large ones."""
    rng = np.random.default_rng(0)
    stream_peaks = []
    for n in (2_000_000, 8_000_000):
        big = _write_fasta(tmp_path / "big.fa", [("chr", _random_dna(rng, n))])
        stream_peaks.append(
            _traced_peak(lambda b=big: sum(1 for _ in stream_windows(b, 1000, 1000)))
        )
    assert stream_peaks[1] < 7 and stream_peaks[1] < stream_peaks[0] + 0.5, stream_peaks

    model_dir, fastas = _memory_inputs(tmp_path, rng)
    model, tokenizer = load_classifier(model_dir, torch.device("cpu"))

    def run(name, path):
        predict_fasta(
            model,
            tokenizer,
            path,
            tmp_path / f"{name}.tsv",
            window=1000,
            stride=1000,
            batch_size=32,
            out_windows=tmp_path / f"{name}.w.tsv",
            out_bed=tmp_path / f"{name}.bed",
            progress=False,
        )

    peaks = _memory_peaks(fastas, run)
    assert len(pd.read_csv(tmp_path / "many.tsv", sep="\t")) == 3000
    assert max(peaks.values()) < 10, peaks
    assert peaks["many"] < 2 * peaks["few"] + 1, peaks


def test_training_info_records_the_tokenizer(tmp_path):
    model_dir = _save_model(tmp_path / "model")
    info = json.loads((model_dir / TRAINING_INFO).read_text())
    assert info["window_length"] == 100 and info["labels"] == ["host", "virus"]
    assert info["tokenizer"]["spec"] == {"kind": "char"} and info["tokenizer"]["size"] == 12


def test_batches_hold_at_most_max_batch_tokens(tmp_path):
    """Long windows (1M tokens) must not be stacked 64 to a batch: past one window, a batch holds
    at most `max_batch_tokens` tokens; the scores do not depend on the batching."""
    model_dir = _save_model(tmp_path / "model")
    model, tokenizer = load_classifier(model_dir, torch.device("cpu"))
    rng = np.random.default_rng(3)
    fasta = _write_fasta(tmp_path / "x.fa", [("a", _random_dna(rng, 730)), ("b", "ACGT" * 40)])
    rows = []
    forward = model.forward

    def counting_forward(*args, **kwargs):
        rows.append(kwargs["input_ids"].shape[0])
        return forward(*args, **kwargs)

    model.forward = counting_forward
    outputs = {}
    for name, tokens in (("default", 1 << 16), ("small", 250), ("one", 1)):
        rows.clear()
        predict_fasta(
            model, tokenizer, fasta, tmp_path / f"{name}.tsv", window=100, stride=100,
            out_windows=tmp_path / f"{name}.w.tsv", max_batch_tokens=tokens, progress=False,
        )  # fmt: skip
        outputs[name] = pd.read_csv(tmp_path / f"{name}.w.tsv", sep="\t")
        assert max(rows) == {"default": 10, "small": 2, "one": 1}[name], rows
    for name in ("small", "one"):
        pd.testing.assert_frame_equal(outputs[name], outputs["default"], atol=1e-6)
