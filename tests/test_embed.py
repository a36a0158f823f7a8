"""`dnalm embed`: what a vector is, FASTA and table input, the output, errors and flat memory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from test_checkpoints import random_official_state, write_hf
from test_predict import (
    _memory_inputs,
    _memory_peaks,
    _random_dna,
    _save_model,
    _traced_peak,
    _write_fasta,
)

from dnalm.cli import main as cli_main
from dnalm.embed import embed, load_embedder
from dnalm.models import load_hyenadna

CPU = torch.device("cpu")


def _masked_mean(backbone, tokenizer, seqs: list[str]) -> np.ndarray:
    """The reference: each sequence alone, its last hidden states averaged."""
    out = []
    with torch.no_grad():
        for seq in seqs:
            ids = tokenizer(seq, add_special_tokens=False, return_tensors="pt")["input_ids"]
            out.append(backbone(input_ids=ids).last_hidden_state[0].mean(0).numpy())
    return np.stack(out)


def test_vectors_are_mean_pooled_hidden_states(tmp_path):
    model_dir = _save_model(tmp_path / "model", window=40)
    backbone, tokenizer, _ = load_embedder(model_dir, CPU)
    rng = np.random.default_rng(0)
    long, short = _random_dna(rng, 100), _random_dna(rng, 13)
    fasta = _write_fasta(tmp_path / "x.fa", [("long", long), ("short", short)])
    n = embed(backbone, tokenizer, tmp_path / "e.parquet", window=40, fasta=fasta, progress=False)
    table = pd.read_parquet(tmp_path / "e.parquet")
    assert (
        n == 2
        and list(table.columns) == ["id", "vector"]
        and list(table["id"]) == ["long", "short"]
    )
    vectors = np.stack(table["vector"])
    assert vectors.dtype == np.float32 and vectors.shape == (2, backbone.config.d_model)
    # the short record is one window, padded in a batch with the others: the mask keeps it exact
    np.testing.assert_allclose(vectors[1], _masked_mean(backbone, tokenizer, [short])[0], atol=1e-5)
    # the long one: windows 0-40, 40-80 and 60-100 (flush with the end) add 40, 40 and 20 bases
    parts = _masked_mean(backbone, tokenizer, [long[0:40], long[40:80], long[60:100]])
    expected = (40 * parts[0] + 40 * parts[1] + 20 * parts[2]) / 100
    np.testing.assert_allclose(vectors[0], expected, atol=1e-5)
    # per window: each window's own vector, with its coordinates
    embed(
        backbone,
        tokenizer,
        tmp_path / "w.parquet",
        window=40,
        fasta=fasta,
        per_window=True,
        batch_size=2,
        progress=False,
    )
    windows = pd.read_parquet(tmp_path / "w.parquet")
    assert list(windows.columns) == ["id", "start", "end", "vector"]
    assert windows[["id", "start", "end"]].values.tolist() == [
        ["long", 0, 40],
        ["long", 40, 80],
        ["long", 60, 100],
        ["short", 0, 13],
    ]
    np.testing.assert_allclose(np.stack(windows["vector"][:3]), parts, atol=1e-5)


def test_tables_and_official_checkpoints(tmp_path):
    checkpoint = write_hf(tmp_path / "official", random_official_state())
    backbone, tokenizer, _ = load_embedder(checkpoint, CPU)
    reference = load_hyenadna(checkpoint).hyena
    rows = pd.DataFrame({"seq": ["ACGTACGGT", "ttgacn", "GGGGCCCCAAAT"], "label": ["a", "b", "a"]})
    rows["id"] = ["r1", "r2", "r3"]
    for name in ("t.csv", "t.tsv.gz", "t.parquet"):
        path = tmp_path / name
        if name.endswith(".parquet"):
            rows.to_parquet(path)
        else:
            rows.to_csv(path, sep="," if ".csv" in name else "\t", index=False)
        embed(backbone, tokenizer, tmp_path / "e.parquet", window=32, table=path, progress=False)
        out = pd.read_parquet(tmp_path / "e.parquet")
        assert out[["id", "label"]].values.tolist() == [["r1", "a"], ["r2", "b"], ["r3", "a"]]
    expected = _masked_mean(reference, tokenizer, [s.upper() for s in rows["seq"]])
    np.testing.assert_allclose(np.stack(out["vector"]), expected, atol=1e-5)
    # dnalm's own window tables keep the sequence in `sequence` and the id in `chrom`
    windows = pd.DataFrame(
        {"chrom": ["w1", "w2"], "sequence": ["ACGT", "GGCA"], "label_id": [0, 1]}
    )
    windows.to_parquet(tmp_path / "windows.parquet")
    embed(
        backbone,
        tokenizer,
        tmp_path / "w.parquet",
        window=32,
        table=tmp_path / "windows.parquet",
        progress=False,
    )
    assert list(pd.read_parquet(tmp_path / "w.parquet")["id"]) == ["w1", "w2"]


def test_embed_cli_and_its_errors(tmp_path, capsys):
    model_dir = _save_model(tmp_path / "model", window=40)
    table = tmp_path / "t.csv"
    pd.DataFrame({"seq": ["ACGT", "ACXT"], "id": ["a", "b"]}).to_csv(table, index=False)
    out = tmp_path / "e.parquet"
    args = ["embed", "--model", str(model_dir), "--table", str(table), "--out", str(out), "--quiet"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "t.csv, line 3, record 'b', column 'seq': invalid character 'X' at position 3" in err
    assert not out.exists() and not list(tmp_path.glob(".e.parquet*"))
    pd.DataFrame({"seq": ["ACGT", "ACGA"], "id": ["a", "a"]}).to_csv(table, index=False)
    assert cli_main(args) == 2
    assert "record 'a': duplicate id" in capsys.readouterr().err
    pd.DataFrame({"sequence": ["ACGT", "ACGA"], "name": ["a", "b"]}).to_csv(table, index=False)
    assert cli_main([*args, "--id-column", "name", "--per-window"]) == 0
    assert "2 windows embedded" in capsys.readouterr().err
    assert list(pd.read_parquet(out)["id"]) == ["a", "b"]
    assert cli_main([*args, "--sequence-column", "dna"]) == 2
    assert "no column 'dna'" in capsys.readouterr().err


def test_memory_stays_flat(tmp_path):
    """As for predict: two 750 kbp records cost no more memory than 3,000 short contigs, the
    output is written in row groups, and neither grows with the input."""
    model_dir, fastas = _memory_inputs(tmp_path, np.random.default_rng(0))
    backbone, tokenizer, _ = load_embedder(model_dir, CPU)

    def run(name, path):
        embed(
            backbone,
            tokenizer,
            tmp_path / f"{name}.parquet",
            window=1000,
            fasta=path,
            per_window=name == "few",
            batch_size=32,
            rows_per_group=256,
            progress=False,
        )

    peaks = _memory_peaks(fastas, run)
    import pyarrow.parquet as pq

    assert pq.ParquetFile(tmp_path / "many.parquet").metadata.num_rows == 3000
    assert pq.ParquetFile(tmp_path / "many.parquet").num_row_groups == 12  # 3000 / 256
    assert pq.ParquetFile(tmp_path / "few.parquet").metadata.num_rows == 1500
    assert max(peaks.values()) < 10, peaks
    assert peaks["many"] < 2 * peaks["few"] + 1, peaks


def test_a_table_streams_in_chunks(tmp_path, monkeypatch):
    """A table is read 100 rows at a time: 4x the rows of 600 bases (2.4 MB of sequence if read
    whole) raise the peak only by the 8-byte id hashes kept to reject duplicates."""
    import dnalm.embed

    monkeypatch.setattr(dnalm.embed, "TABLE_CHUNK_ROWS", 100)
    model_dir = _save_model(
        tmp_path / "model", max_seq_len=1024, window=600, d_model=16, n_layer=1, d_inner=32
    )
    backbone, tokenizer, _ = load_embedder(model_dir, CPU)
    rng = np.random.default_rng(1)
    for name, n in (("small", 1000), ("big", 4000)):
        rows = pd.DataFrame({"seq": [_random_dna(rng, 600) for _ in range(n)]})
        rows.to_parquet(tmp_path / f"{name}.parquet")
    peaks = [
        _traced_peak(
            lambda n=n: embed(
                backbone,
                tokenizer,
                tmp_path / f"{n}.out.parquet",
                window=600,
                table=tmp_path / f"{n}.parquet",
                rows_per_group=100,
                progress=False,
            )
        )
        for n in ("small", "big")
    ]
    assert pd.read_parquet(tmp_path / "big.out.parquet")["id"].iloc[-1] == "row4000"
    assert peaks[1] < peaks[0] + 0.6 and peaks[1] < 2.0, peaks
