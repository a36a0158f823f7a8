"""Streaming windows -> token shards: block boundaries, strands, inline sequences, bad input,
and memory that does not grow with the record."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pysam
import pytest
from conftest import write_genome

from dnalm.corpus import read_window_batches, tokenize_windows, window_blocks, window_sequences
from dnalm.shards import ShardWriter, TokenShard, read_meta
from dnalm.tokenization import build_tokenizer, char_tokenizer, encoder_for, reverse_complement
from dnalm.windows import WindowSpec, windows_for_genome

BASES = np.array(list("ACGTacgtN"))


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    """Two records with soft-masking, N runs and ambiguity codes, plus their literal sequences."""
    rng = np.random.default_rng(7)
    records = {}
    for name, length in (("chrA", 7001), ("chrB", 2500)):
        seq = BASES[rng.integers(0, 8, length)]
        seq[1234:1300] = "N"
        seq[2000:2003] = list("RYW")
        records[name] = "".join(seq)
    path = write_genome(tmp_path_factory.mktemp("genome"), "g", list(records.items()))
    return path, records


def _table(path, spec, *, strands="+", shuffle=False):
    win = windows_for_genome(path, spec).assign(genome="g", label="x", group="g")
    win["strand"] = [strands[i % len(strands)] for i in range(len(win))]
    win["label_id"] = np.arange(len(win)) % 3
    if shuffle:
        win = win.sample(frac=1.0, random_state=0).reset_index(drop=True)
    return win


def _expected(win, records, tokenizer):
    out = []
    for chrom, start, end, strand in zip(
        win["chrom"], win["start"], win["end"], win["strand"], strict=True
    ):
        seq = records[chrom][start:end]
        seq = reverse_complement(seq) if strand == "-" else seq
        out.append(tokenizer(seq, add_special_tokens=False)["input_ids"])
    return out


def _shard_rows(prefix):
    shard = TokenShard.open(prefix, verify="full")
    return [shard[i].tolist() for i in range(len(shard))], shard.labels.tolist()


@pytest.mark.parametrize(
    "spec",
    [WindowSpec(1000, 500, 1.0), WindowSpec(100, 3001, 1.0), WindowSpec(70_000, 70_000, 1.0)],
    ids=["overlapping", "gaps", "touching"],
)
def test_char_ids_cut_from_bgzf_pieces(tmp_path, spec):
    """A record of several BGZF blocks: the char encoder translates block by block, and one
    span (overlapping or touching windows) or several (gaps between windows) is cut from the
    pieces: the ids are the tokenizer's, from a table in memory and from parquet alike."""
    rng = np.random.default_rng(11)
    seq = "".join(BASES[rng.integers(0, 9, 300_001)])
    path = write_genome(tmp_path, "g", [("chrA", seq)])
    tok = char_tokenizer()
    win = windows_for_genome(path, spec).assign(genome="g", strand="+", label_id=0)
    win.to_parquet(tmp_path / "w.parquet", index=False)
    expected = _expected(win, {"chrA": seq}, tok)
    for block_size in (10**9, 65_000):
        for source in (win, tmp_path / "w.parquet"):
            tokenize_windows(
                source, {"g": path}, encoder_for(tok), tmp_path / "s", block_size=block_size
            )
            assert _shard_rows(tmp_path / "s")[0] == expected, (block_size, source)


@pytest.mark.parametrize("strands", ["+", "-", "+-", "++-"])
def test_tokens_equal_tokenizer_for_any_block_size(genome, tmp_path, strands):
    path, records = genome
    tok = char_tokenizer()
    win = _table(path, WindowSpec(100, 37, 1.0), strands=strands)
    expected = _expected(win, records, tok)
    for block_size in (1, 37, 101, 999, 10**9):
        prefix = tmp_path / f"s{block_size}"
        meta = {"tokenizer": "char"}
        n = tokenize_windows(
            win, {"g": path}, encoder_for(tok), prefix, block_size=block_size, meta=meta
        )
        assert n == len(win)
        rows, labels = _shard_rows(prefix)
        assert rows == expected, f"block_size {block_size}"
        assert labels == win["label_id"].tolist()
        meta = read_meta(prefix)
        assert {k: meta[k] for k in ("tokenizer", "sequences", "tokens", "window_length")} == {
            "tokenizer": "char",
            "sequences": len(win),
            "tokens": 100 * len(win),
            "window_length": 100,
        }
        assert (meta["dtype"], meta["vocab_size"], meta["tokenizer_spec"]) == (
            "uint8",
            12,
            {"kind": "char"},
        )
        # windows overlap (stride 37 < 100): each strand's bases are stored once per block
        assert meta["stored_tokens"] < meta["tokens"] or block_size < 100
        TokenShard.open(prefix, verify="full")


def _per_window_shard(prefix, win, path, encoder):
    """The layout before views: every window encoded and stored on its own, in table order."""
    ids = encoder.encode_many(list(window_sequences(win, {"g": path})))
    with ShardWriter(prefix, encoder.dtype) as writer:
        for row, label in zip(ids, win["label_id"], strict=True):
            writer.add(row, label)


def _tokenizer(name, records):
    if name == "char":
        return char_tokenizer()
    if name == "bpe":
        return build_tokenizer("bpe", sequences=list(records.values()), vocab_size=60)
    k, stride = (int(x) for x in name.removeprefix("kmer").split("/"))
    return build_tokenizer("kmer", k=k, stride=stride)


@pytest.mark.parametrize("name", ["char", "kmer3/1", "kmer3/3", "kmer4/2", "bpe"])
@pytest.mark.parametrize("window_stride", [30, 37])
def test_views_read_the_ids_of_window_by_window_rows(genome, tmp_path, name, window_stride):
    """Every tokenizer kind, both strands, gaps at N runs, k-mer windows in phase with each
    other (stride 30, a multiple of k = 3) and out of phase (37): the shard's rows hold the
    ids the tokenizer gives each window alone, as the per-window layout stored them."""
    path, records = genome
    tok = _tokenizer(name, records)
    enc = encoder_for(tok)
    win = _table(path, WindowSpec(60, window_stride, 0.05), strands="++-+--")
    starts = win.loc[win["chrom"] == "chrA", "start"].to_numpy()
    assert (np.diff(starts) > window_stride).any()  # a gap where the N run is left out
    win.loc[win.index[::7], "end"] -= 57  # some windows too short for a k-mer
    expected = _expected(win, records, tok)
    _per_window_shard(tmp_path / "old", win, path, enc)
    assert _shard_rows(tmp_path / "old")[0] == expected
    for block_size in (1, 100, 10**9):
        prefix = tmp_path / f"new{block_size}"
        tokenize_windows(win, {"g": path}, enc, prefix, block_size=block_size)
        shard = TokenShard.open(prefix, verify="full")
        assert [shard[i].tolist() for i in range(len(shard))] == expected, block_size
        assert shard.labels.tolist() == win["label_id"].tolist()
        meta = read_meta(prefix)
        assert meta["tokens"] == sum(map(len, expected))
        stride = 1 if name in ("char", "bpe") else tok.init_kwargs["dnalm_tokenizer"]["stride"]
        if block_size == 1 or name == "bpe" or window_stride % stride:
            # one window per block; tokens that depend on the start; windows of one phase
            # (3 or 2 windows apart) that do not overlap: nothing to share
            assert meta["stored_tokens"] == meta["tokens"]
        else:  # how much depends on the strands' mix: see the next test for the exact count
            assert meta["stored_tokens"] < meta["tokens"]


def test_char_shard_stores_each_covered_base_once(genome, tmp_path):
    path, records = genome
    win = _table(path, WindowSpec(100, 50, 0.05), strands="+++-")
    tokenize_windows(win, {"g": path}, encoder_for(char_tokenizer()), tmp_path / "s")
    covered = 0
    for _, rows in win.groupby(["chrom", "strand"]):
        bases = np.zeros(7001, bool)
        for start, end in zip(rows["start"], rows["end"], strict=True):
            bases[start:end] = True
        covered += int(bases.sum())
    meta = read_meta(tmp_path / "s")
    assert meta["stored_tokens"] == covered < meta["tokens"]
    assert (tmp_path / "s.bin").stat().st_size == covered


def test_region_reader_reads_bases_by_the_index_layout(tmp_path, monkeypatch):
    """Byte reads at the .fai/.gzi offsets give the record's bases, without pysam's fetch:
    regions across BGZF blocks and lines, soft-masking and N, a plain FASTA with CRLF line ends.
    A file that no longer fits its index falls back to fetch_region, which names it."""
    import dnalm.corpus
    from dnalm.corpus import _RegionReader

    rng = np.random.default_rng(5)
    seq = "".join(BASES[rng.integers(0, 9, 300_000)])  # several 64 KiB BGZF blocks
    bgzf = write_genome(tmp_path, "big", [("r1", seq[:1000]), ("r2", seq)])
    crlf = tmp_path / "crlf.fa"
    crlf.write_bytes(
        b">r1 a record\r\n"
        + b"".join(seq[i : i + 70].encode() + b"\r\n" for i in range(0, 10_000, 70))
    )
    pysam.faidx(str(crlf))
    fallback = dnalm.corpus.fetch_region
    with monkeypatch.context() as m:
        m.setattr(dnalm.corpus, "fetch_region", None)  # any fallback fails the test
        for path, chrom, n in ((bgzf, "r2", 300_000), (bgzf, "r1", 1000), (crlf, "r1", 10_000)):
            reader = _RegionReader(path)
            for start in [0, 1, 59, 60, 61, n - 1, *rng.integers(0, n - 1, 40).tolist()]:
                end = min(n, start + int(rng.integers(1, 120_000)))
                assert reader.fetch(chrom, start, end) == seq[start:end].encode(), (start, end)
                text, line_ends = reader.read(chrom, start, end)
                assert line_ends == (b"\n" if path == bgzf else b"")
            reader.close()
    assert dnalm.corpus.fetch_region is fallback
    crlf.write_bytes(crlf.read_bytes()[:5000])  # truncated after indexing
    reader = _RegionReader(crlf)
    with pytest.raises(ValueError, match=r"crlf\.fa: cannot read r1:4,900-5,000"):
        reader.fetch("r1", 4900, 5000)
    reader.close()


def test_unsorted_table_and_varied_lengths(genome, tmp_path):
    """A shuffled table (descending starts) and windows of several lengths keep table order."""
    path, records = genome
    tok = char_tokenizer()
    win = _table(path, WindowSpec(64, 50, 1.0), strands="+-", shuffle=True)
    win["end"] = win["start"] + 10 + (win.index.to_numpy() % 50)
    expected = _expected(win, records, tok)
    for block_size in (1, 500, 10**9):
        tokenize_windows(win, {"g": path}, encoder_for(tok), tmp_path / "s", block_size=block_size)
        assert _shard_rows(tmp_path / "s")[0] == expected


def test_kmer_tokenizer_goes_window_by_window(genome, tmp_path):
    path, records = genome
    tok = build_tokenizer("kmer", k=3, stride=1)
    win = _table(path, WindowSpec(60, 45, 1.0), strands="+-")
    expected = _expected(win, records, tok)
    assert {len(x) for x in expected} == {58}
    for block_size in (1, 333, 10**9):
        tokenize_windows(win, {"g": path}, encoder_for(tok), tmp_path / "k", block_size=block_size)
        assert _shard_rows(tmp_path / "k")[0] == expected


def test_sparse_windows_are_read_one_by_one(tmp_path):
    """A sparse sample (windows 100 kb apart) is not read as one block of everything between."""
    seq = _random_record(400_000, seed=3).decode()
    path = write_genome(tmp_path, "g", [("r", seq)])
    starts = np.array([10, 500, 100_000, 100_200, 250_000, 399_000])
    win = pd.DataFrame({"genome": "g", "chrom": "r", "start": starts, "end": starts + 1000})
    win.loc[5, "end"] = 400_000
    blocks = list(window_blocks(win, {"g": path}, block_size=10**9))
    assert [len(b.starts) for b in blocks] == [2, 2, 1, 1]
    assert sum(len(b.bases) for b in blocks) < 10_000
    expected = [seq[s:e].encode() for s, e in zip(win["start"], win["end"], strict=True)]
    assert list(window_sequences(win, {"g": path}, block_size=10**9)) == expected


def test_parquet_batches_and_window_sequences(genome, tmp_path):
    path, records = genome
    win = _table(path, WindowSpec(80, 80, 0.0), strands="+-")
    table = tmp_path / "w.parquet"
    win.to_parquet(table, index=False)
    batches = list(read_window_batches(table, batch_rows=7))
    assert len(batches) == -(-len(win) // 7)
    expected = [
        (reverse_complement(records[c][s:e]) if st == "-" else records[c][s:e]).encode()
        for c, s, e, st in zip(win["chrom"], win["start"], win["end"], win["strand"], strict=True)
    ]
    assert list(window_sequences(iter(batches), {"g": path}, block_size=100)) == expected
    enc = encoder_for(char_tokenizer())
    tokenize_windows(table, {"g": path}, enc, tmp_path / "a")
    tokenize_windows(read_window_batches(table, batch_rows=7), {"g": path}, enc, tmp_path / "b")
    # the same rows; the bytes differ: a batch boundary also ends a stored stream
    assert _shard_rows(tmp_path / "a") == _shard_rows(tmp_path / "b")
    assert _shard_rows(tmp_path / "a")[0] == [enc.encode(x).tolist() for x in expected]


def test_inline_sequences(tmp_path):
    """Labelled-sequence tasks carry their sequences; no genome is read, strand is ignored."""
    seqs = ["ACGTN", "ttgca", "A" * 300, "GATTACA"] * 5
    win = pd.DataFrame(
        {
            "genome": "",
            "chrom": "",
            "start": 0,
            "end": [len(s) for s in seqs],
            "strand": "-",
            "label_id": [i % 2 for i in range(len(seqs))],
            "sequence": seqs,
        }
    )
    for tok in (char_tokenizer(), build_tokenizer("kmer", k=2, stride=2)):
        expected = [tok(s, add_special_tokens=False)["input_ids"] for s in seqs]
        for block_size in (1, 10, 10**9):
            tokenize_windows(win, {}, encoder_for(tok), tmp_path / "s", block_size=block_size)
            rows, labels = _shard_rows(tmp_path / "s")
            assert rows == expected
            assert labels == win["label_id"].tolist()
    assert list(window_sequences(win, {})) == [s.encode() for s in seqs]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"genome": "other"}, r"row 3: genome 'other' has no FASTA among the inputs \(g\)"),
        ({"chrom": "chrZ"}, r"row 3: genome 'g' has no record 'chrZ'"),
        ({"end": 7002}, r"row 3: window g chrA:\d+-7002 is empty or outside the record"),
        ({"start": -5}, r"row 3: window g chrA:-5-\d+ is empty or outside"),
        ({"end": 0}, r"row 3: window g chrA:\d+-0 is empty or outside"),
        ({"chrom": None}, r"row 3: genome or chrom is missing"),
        ({"genome": None}, r"row 3: genome or chrom is missing"),
    ],
)
def test_bad_window_rows_name_the_row_and_leave_nothing(genome, tmp_path, change, message):
    path, _ = genome
    win = _table(path, WindowSpec(100, 100, 1.0))
    table = tmp_path / "w.parquet"
    for column, value in change.items():
        win.loc[3, column] = value
    win.to_parquet(table, index=False)
    enc = encoder_for(char_tokenizer())
    with pytest.raises(ValueError, match=f"w.parquet, {message}"):
        tokenize_windows(table, {"g": path}, enc, tmp_path / "out" / "s", meta={})
    assert not list((tmp_path / "out").iterdir())


def test_empty_table(genome, tmp_path):
    path, _ = genome
    win = _table(path, WindowSpec(100, 100, 1.0)).iloc[:0]
    win.to_parquet(tmp_path / "w.parquet", index=False)
    enc = encoder_for(char_tokenizer())
    for source in (win, tmp_path / "w.parquet"):
        assert tokenize_windows(source, {"g": path}, enc, tmp_path / "s", meta={}) == 0
        assert len(TokenShard.open(tmp_path / "s")) == 0
        assert read_meta(tmp_path / "s")["window_length"] == 0


def _random_record(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, n, dtype=np.uint8)].tobytes()


def _fasta_lines(name: str, seq: bytes, width: int = 60) -> bytes:
    full = len(seq) // width * width
    lines = np.frombuffer(seq[:full], np.uint8).reshape(-1, width)
    body = np.hstack([lines, np.full((len(lines), 1), ord("\n"), np.uint8)]).tobytes()
    tail = seq[full:] + b"\n" if full < len(seq) else b""
    return b">" + name.encode() + b"\n" + body + tail


@pytest.fixture(scope="module")
def big_genome(tmp_path_factory):
    """A 5 Mbp and a 50 Mbp record, bgzip (level 1 to keep the test fast) + .fai/.gzi."""
    path = tmp_path_factory.mktemp("big") / "big.fa.gz"
    with pysam.BGZFile(str(path), "wb1") as out:
        for name, n in (("small", 5_000_000), ("large", 50_000_000)):
            out.write(_fasta_lines(name, _random_record(n, seed=n)))
    pysam.faidx(str(path))
    return path


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_record(big_genome, tmp_path):
    """Tokenizing a 50 Mbp record peaks no higher than a 5 Mbp one: memory is one block of
    bases plus one batch of table rows, both fixed sizes.

    Holding the 50 Mbp record whole would take 50 MB for its bases alone, 200 MB more for its
    int32 ids; with 1 Mbp blocks the run stays near 10 MB.
    """
    spec = WindowSpec(1024, 512, 0.1)
    block = 1_000_000
    enc = encoder_for(char_tokenizer())
    peaks = {}
    tables = []
    windows_peak = _peak_bytes(
        lambda: tables.append(windows_for_genome(big_genome, spec, block_size=block))
    )
    # the returned table (~107k rows) is part of it; the 55 Mbp of bases are not
    assert windows_peak < 10 * block, windows_peak
    table = tables[0]
    for chrom in ("small", "large"):
        win = table[table["chrom"] == chrom].assign(genome="big", strand="+", label_id=0)
        path = tmp_path / f"{chrom}.parquet"
        win.to_parquet(path, index=False)
        for batch_rows in (4096, None):
            batches = read_window_batches(path, batch_rows) if batch_rows else path
            prefix = tmp_path / f"{chrom}{batch_rows}"
            peaks[chrom, batch_rows] = _peak_bytes(
                lambda b=batches, p=prefix: tokenize_windows(
                    b, {"big": big_genome}, enc, p, block_size=block
                )
            )
            assert TokenShard(prefix, "uint8").lengths.sum() == 1024 * len(win)
    assert peaks["large", 4096] < 1.2 * peaks["small", 4096] + 500_000, peaks
    # the rule's default batches: the whole 97k-row table of the large record is one batch
    assert peaks["large", None] < 20 * block, peaks
