import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dnalm.shards import INDEX_DTYPE, ShardError, TokenShard, read_meta, write_meta, write_shard


def test_round_trip_and_padding(tmp_path):
    seqs = [
        (np.array([7, 8, 9], dtype=np.uint8), 0),
        (np.array([10, 11], dtype=np.uint8), 1),
        (np.array([7] * 5, dtype=np.uint8), 1),
    ]
    prefix = tmp_path / "train"
    assert write_shard(prefix, seqs, np.dtype(np.uint8)) == 3
    write_meta(prefix, {"dtype": "uint8", "labels": ["host", "virus"]})
    assert read_meta(prefix)["labels"] == ["host", "virus"]
    shard = TokenShard.open(prefix)
    assert len(shard) == 3
    assert shard[1].tolist() == [10, 11]
    assert shard.labels.tolist() == [0, 1, 1]
    ids, mask = shard.batch(np.array([0, 1]), pad_id=4)
    assert ids.tolist() == [[7, 8, 9], [10, 11, 4]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    ids, _ = shard.batch(np.array([2]), pad_id=4, length=4)
    assert ids.tolist() == [[7, 7, 7, 7]]
    assert not list(tmp_path.glob("*.tmp"))


def test_empty_shard(tmp_path):
    write_shard(tmp_path / "x", [], np.dtype(np.uint8))
    shard = TokenShard(tmp_path / "x", "uint8")
    assert len(shard) == 0


def test_writer_spills_the_index_and_mixes_add_and_add_many(tmp_path):
    """More rows than one index buffer, single and bulk adds interleaved, in order."""
    from dnalm.shards import _FLUSH_ROWS, ShardWriter

    rng = np.random.default_rng(0)
    expected = []
    with ShardWriter(tmp_path / "s", np.uint16) as writer:
        for i in range(_FLUSH_ROWS + 10):
            ids = rng.integers(0, 1000, i % 5, dtype=np.uint16)
            writer.add(ids, i % 3)
            expected.append((ids.tolist(), i % 3))
            if i % 20_000 == 0:
                lengths = np.array([3, 0, 2])
                flat = rng.integers(0, 1000, 5, dtype=np.uint16)
                writer.add_many(flat, lengths, np.array([7, 8, 9]))
                expected += [(flat[:3].tolist(), 7), ([], 8), (flat[3:].tolist(), 9)]
    shard = TokenShard(tmp_path / "s", np.uint16)
    assert len(shard) == writer.count == len(expected)
    assert shard.tokens.size == writer.tokens == sum(len(ids) for ids, _ in expected)
    for i in (
        0,
        1,
        5,
        6,
        7,
        20_000,
        20_001,
        20_004,
        _FLUSH_ROWS - 1,
        _FLUSH_ROWS + 3,
        len(shard) - 1,
    ):
        assert (shard[i].tolist(), int(shard.labels[i])) == expected[i], i
    assert shard.index.dtype.names == ("offset", "length", "label")


def test_writer_error_leaves_nothing(tmp_path):
    from dnalm.shards import ShardWriter

    write_shard(tmp_path / "s", [(np.array([1, 2], np.uint8), 0)], np.dtype(np.uint8))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def failing():
        yield np.array([7, 8], np.uint8), 1
        raise RuntimeError("reader failed")

    with pytest.raises(RuntimeError, match="reader failed"):
        write_shard(tmp_path / "s", failing(), np.dtype(np.uint8))
    with (
        pytest.raises(ValueError, match="do not describe the same sequences"),
        ShardWriter(tmp_path / "s", np.uint8) as writer,
    ):
        writer.add_many(np.zeros(4, np.uint8), np.array([1, 2]), np.array([0, 0]))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


# --- checks on open: a damaged or stale shard stops the job -------------------------------

BLOCK = 64  # checksum block in the tests: a 1,000-id shard has 16 blocks


def _char_shard(prefix, n=1000, seed=0, block=BLOCK, **meta):
    """A shard of char-like ids (7..11) in rows of 10, with small checksum blocks."""
    from dnalm.shards import ShardWriter

    ids = np.random.default_rng(seed).integers(7, 12, n, dtype=np.uint8)
    with ShardWriter(
        prefix, np.uint8, meta={"vocab_size": 12, **meta}, checksum_block_bytes=block
    ) as w:
        w.add_many(ids, np.full(n // 10, 10), np.arange(n // 10) % 2)
    return ids


def _flip(path, at):
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_open_checks_and_reads_a_fresh_shard(tmp_path):
    ids = _char_shard(tmp_path / "s")
    for verify in ("sample", "full"):
        shard = TokenShard.open(tmp_path / "s", verify=verify)
        assert [shard[i].tolist() for i in range(len(shard))] == ids.reshape(-1, 10).tolist()
    meta = read_meta(tmp_path / "s")
    assert meta["stored_tokens"] == meta["tokens"] == 1000
    assert meta["max_token_id"] == 11
    assert meta["checksum"]["bin_bytes"] == 1000 and len(meta["checksum"]["bin"]) == 16


def test_truncated_bin_fails_naming_file_sizes_and_fix(tmp_path):
    _char_shard(tmp_path / "s")
    path = tmp_path / "s.bin"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ShardError) as err:
        TokenShard.open(tmp_path / "s")
    message = str(err.value)
    assert f"{path} is truncated: it holds 500 bytes" in message
    assert "records 1,000" in message
    assert "--forcerun tokenize" in message
    # the constructor alone (no meta) checks the size against the index
    with pytest.raises(ShardError, match=r"s\.bin is truncated: it holds 500 bytes.*1,000 bytes"):
        TokenShard(tmp_path / "s", "uint8")


def test_extended_bin_fails(tmp_path):
    _char_shard(tmp_path / "s")
    path = tmp_path / "s.bin"
    path.write_bytes(path.read_bytes() + b"\x07" * 3)
    with pytest.raises(ShardError, match=r"s\.bin is longer than when it was written: .*1,003"):
        TokenShard.open(tmp_path / "s")
    with pytest.raises(ShardError, match=r"s\.bin is longer than its index says"):
        TokenShard(tmp_path / "s", "uint8")


def test_flipped_byte_full_and_sampled_checks(tmp_path, monkeypatch):
    from dnalm.shards import sampled_blocks

    monkeypatch.delenv("DNALM_VERIFY_SHARDS", raising=False)
    _char_shard(tmp_path / "s")
    sampled = sampled_blocks(read_meta(tmp_path / "s"))
    assert len(sampled) == 4 and {0, 15} <= set(sampled)
    assert sampled == sampled_blocks(read_meta(tmp_path / "s"))  # deterministic
    skipped = min(set(range(16)) - set(sampled))
    picked = sorted(set(sampled) - {0, 15})[0]
    original = (tmp_path / "s.bin").read_bytes()

    # a block the sampled check reads: caught on a plain open
    _flip(tmp_path / "s.bin", picked * BLOCK + 5)
    with pytest.raises(ShardError) as err:
        TokenShard.open(tmp_path / "s")
    assert f"block {picked} of 16 (bytes {picked * BLOCK:,}-{(picked + 1) * BLOCK:,})" in str(
        err.value
    )
    assert "fails its checksum" in str(err.value) and "--forcerun tokenize" in str(err.value)

    # a block it does not read: only the full check (argument or environment) catches it
    (tmp_path / "s.bin").write_bytes(original)
    _flip(tmp_path / "s.bin", skipped * BLOCK + 5)
    TokenShard.open(tmp_path / "s")
    with pytest.raises(ShardError, match=f"block {skipped} of 16 .*fails its checksum"):
        TokenShard.open(tmp_path / "s", verify="full")
    monkeypatch.setenv("DNALM_VERIFY_SHARDS", "full")
    with pytest.raises(ShardError, match=f"block {skipped} of 16"):
        TokenShard.open(tmp_path / "s")
    TokenShard.open(tmp_path / "s", verify="sample")  # the argument wins over the environment
    monkeypatch.setenv("DNALM_VERIFY_SHARDS", "everything")
    with pytest.raises(ValueError, match="DNALM_VERIFY_SHARDS='everything': choose one of"):
        TokenShard.open(tmp_path / "s")


def test_the_last_partial_block_and_the_index_are_checked(tmp_path):
    _char_shard(tmp_path / "s", n=990)  # 15 full blocks and one of 30 bytes
    _flip(tmp_path / "s.bin", 985)
    with pytest.raises(ShardError, match=r"block 15 of 16 \(bytes 960-990\)"):
        TokenShard.open(tmp_path / "s")
    _char_shard(tmp_path / "t")
    _flip(tmp_path / "t.idx", (tmp_path / "t.idx").stat().st_size - 2)  # a label's byte
    with pytest.raises(ShardError, match=r"t\.idx: the index fails its checksum"):
        TokenShard.open(tmp_path / "t")


def test_wrong_dtype_in_meta(tmp_path):
    _char_shard(tmp_path / "s")
    write_meta(tmp_path / "s", {"dtype": "uint16"})
    with pytest.raises(ShardError, match=r"dtype uint16 \(2 bytes per id\) does not match"):
        TokenShard.open(tmp_path / "s")
    write_meta(tmp_path / "s", {"dtype": "float32"})
    with pytest.raises(ShardError, match="float32 is not an integer type"):
        TokenShard.open(tmp_path / "s")
    write_meta(tmp_path / "s", {"dtype": "uint8", "vocab_size": 4096})
    with pytest.raises(ShardError, match="uint8 holds ids up to 255, but the vocabulary has 4096"):
        TokenShard.open(tmp_path / "s")
    write_meta(tmp_path / "s", {"vocab_size": 10})
    with pytest.raises(ShardError, match="holds id 11, outside its 10-token vocabulary"):
        TokenShard.open(tmp_path / "s")


def _tokenized(prefix, tokenizer, seq="ACGTTGCAAC" * 30):
    from dnalm.corpus import tokenize_windows
    from dnalm.tokenization import encoder_for

    win = pd.DataFrame({"sequence": [seq[i : i + 40] for i in range(0, 260, 20)], "label_id": 0})
    tokenize_windows(win, {}, encoder_for(tokenizer), prefix, meta={"labels": ["a"]})
    return TokenShard.open(prefix)


def test_shard_written_for_another_tokenizer(tmp_path):
    from dnalm.shards import check_shard_tokenizer
    from dnalm.tokenization import build_tokenizer, char_tokenizer

    k3 = build_tokenizer("kmer", k=3, stride=1)
    shard = _tokenized(tmp_path / "s", k3)
    check_shard_tokenizer(shard, k3)
    check_shard_tokenizer(shard, build_tokenizer("kmer", k=3, stride=1))  # rebuilt alike
    assert shard.meta["tokenizer_spec"] == {"kind": "kmer", "k": 3, "stride": 1}
    assert shard.meta["vocab_size"] == 7 + 64
    for other, why in (
        (build_tokenizer("kmer", k=4, stride=1), "records a 71-token vocabulary, .* has 263"),
        (build_tokenizer("kmer", k=3, stride=3), "tokenized as .*'stride': 1.*'stride': 3"),
        (char_tokenizer(), "outside the 12-token vocabulary"),
    ):
        with pytest.raises(ShardError) as err:
            check_shard_tokenizer(shard, other)
        assert f"{tmp_path / 's.bin'} was written for another tokenizer" in str(err.value)
        assert re.search(why, str(err.value)), str(err.value)
        assert "rerun its tokenize job" in str(err.value)


def test_bpe_fingerprint_covers_the_merges(tmp_path):
    from dnalm.shards import check_shard_tokenizer, vocabulary_fingerprint
    from dnalm.tokenization import build_tokenizer

    rng = np.random.default_rng(0)
    text = ["".join(rng.choice(list("ACGT"), 400)) for _ in range(20)]
    a = build_tokenizer("bpe", sequences=text, vocab_size=40)
    b = build_tokenizer("bpe", sequences=[t[::-1].replace("A", "G") for t in text], vocab_size=40)
    assert vocabulary_fingerprint(a) == vocabulary_fingerprint(
        build_tokenizer("bpe", sequences=text, vocab_size=40)
    )
    assert vocabulary_fingerprint(a) != vocabulary_fingerprint(b)
    shard = _tokenized(tmp_path / "s", a)
    with pytest.raises(ShardError, match="vocabulary fingerprint differs"):
        check_shard_tokenizer(shard, b)


def _old_layout_shard(prefix, rows, meta):
    """A shard as the writer before checksums and views wrote it: rows back to back."""
    ids = np.concatenate([np.asarray(r, np.uint8) for r, _ in rows])
    index = np.zeros(len(rows), dtype=INDEX_DTYPE)
    lengths = np.array([len(r) for r, _ in rows])
    index["offset"] = np.cumsum(lengths) - lengths
    index["length"] = lengths
    index["label"] = [label for _, label in rows]
    ids.tofile(f"{prefix}.bin")
    with open(f"{prefix}.idx", "wb") as fh:
        np.save(fh, index, allow_pickle=False)
    Path(f"{prefix}.meta.json").write_text(json.dumps(meta))


OLD_META = {
    "dtype": "uint8",
    "labels": ["host", "virus"],
    "pad_token_id": 4,
    "sequences": 3,
    "tokenizer": "results/tokenizers/char",
    "tokens": 9,
    "vocab_size": 12,
    "window_length": 4,
}


def test_old_shards_still_open_with_sizes_checked(tmp_path, caplog):
    from dnalm.shards import check_shard_tokenizer
    from dnalm.tokenization import char_tokenizer, kmer_tokenizer

    rows = [([7, 8, 9, 10], 0), ([11, 7], 1), ([], 1), ([10, 10, 9], 0)]
    _old_layout_shard(tmp_path / "old", rows, OLD_META)
    with caplog.at_level(logging.INFO, logger="dnalm.shards"):
        shard = TokenShard.open(tmp_path / "old", verify="full")
        check_shard_tokenizer(shard, char_tokenizer())
    assert [shard[i].tolist() for i in range(len(shard))] == [r for r, _ in rows]
    assert shard.labels.tolist() == [0, 1, 1, 0]
    assert "written before shards recorded checksums" in caplog.text
    assert "only its vocabulary size is checked" in caplog.text
    with pytest.raises(ShardError, match="records a 12-token vocabulary"):
        check_shard_tokenizer(shard, kmer_tokenizer(2))
    (tmp_path / "old.bin").write_bytes(bytes([7, 8, 9, 10, 11, 7, 10]))
    with pytest.raises(ShardError, match=r"old\.bin is truncated: it holds 7 bytes.*9 uint8 ids"):
        TokenShard.open(tmp_path / "old")


def test_shard_digest_follows_content_not_size(tmp_path, caplog):
    from dnalm.shards import shard_digest

    _char_shard(tmp_path / "a", seed=1)
    _char_shard(tmp_path / "b", seed=2)
    _char_shard(tmp_path / "c", seed=1)
    assert (tmp_path / "a.bin").stat().st_size == (tmp_path / "b.bin").stat().st_size
    assert shard_digest(tmp_path / "a") != shard_digest(tmp_path / "b")
    assert shard_digest(tmp_path / "a") == shard_digest(tmp_path / "c")
    # labels live in the index: a relabelled shard is another input
    _char_shard(tmp_path / "d", seed=1)
    index = np.load(tmp_path / "d.idx")
    index["label"] = 1 - index["label"]
    with open(tmp_path / "d.idx", "wb") as fh:
        np.save(fh, index)
    assert shard_digest(tmp_path / "d") != shard_digest(tmp_path / "a")
    # old shards (no checksums) are hashed whole
    rows = [([7, 8, 9, 10], 0), ([11, 7], 1), ([], 1), ([10, 10, 9], 0)]
    _old_layout_shard(tmp_path / "o1", rows, OLD_META)
    rows[0] = ([7, 8, 9, 9], 0)
    _old_layout_shard(tmp_path / "o2", rows, OLD_META)
    with caplog.at_level(logging.INFO, logger="dnalm.shards"):
        assert shard_digest(tmp_path / "o1") != shard_digest(tmp_path / "o2")
    assert "hashing the whole file" in caplog.text


def test_missing_or_broken_files_name_themselves(tmp_path):
    _char_shard(tmp_path / "s")
    (tmp_path / "s.meta.json").write_text("{not json")
    with pytest.raises(ShardError, match=r"s\.meta\.json is not valid JSON.*--forcerun tokenize"):
        TokenShard.open(tmp_path / "s")
    (tmp_path / "s.meta.json").unlink()
    with pytest.raises(ShardError, match=r"s\.meta\.json is missing; delete the shard"):
        TokenShard.open(tmp_path / "s")
    _char_shard(tmp_path / "t")
    (tmp_path / "t.idx").write_bytes((tmp_path / "t.idx").read_bytes()[:-16])
    with pytest.raises(ShardError, match=r"t\.idx is damaged: its header says 100 rows"):
        TokenShard.open(tmp_path / "t")


def test_views_share_ids_and_the_bin_ends_at_the_farthest_row(tmp_path):
    from dnalm.shards import ShardWriter

    stream = np.arange(7, 27, dtype=np.uint8)
    with ShardWriter(tmp_path / "s", np.uint8) as writer:
        writer.add(np.array([1, 2], np.uint8), 5)
        writer.add_views(stream, np.array([0, 4, 8, 3]), np.array([8, 8, 8, 0]), np.zeros(4))
        writer.add_views(stream, np.array([2]), np.array([3]), np.ones(1))  # a stored tail is cut
    shard = TokenShard.open(tmp_path / "s", verify="full")
    assert [shard[i].tolist() for i in range(len(shard))] == [
        [1, 2],
        list(range(7, 15)),
        list(range(11, 19)),
        list(range(15, 23)),
        [],
        [9, 10, 11],
    ]
    meta = read_meta(tmp_path / "s")
    assert (meta["tokens"], meta["stored_tokens"]) == (2 + 24 + 3, 2 + 16 + 5)
    with (
        pytest.raises(ValueError, match="are not views into 20 ids"),
        ShardWriter(tmp_path / "x", np.uint8) as w,
    ):
        w.add_views(stream, np.array([15]), np.array([6]), np.zeros(1))


def test_ids_in_pieces_are_stored_as_if_joined(tmp_path):
    """The tokenize step hands over one piece per BGZF block: the files are byte for byte
    those of the joined ids, the tail past the farthest view is cut across pieces too."""
    from dnalm.shards import ShardWriter

    stream = np.arange(7, 47, dtype=np.uint8)
    pieces = [stream[:3], stream[3:3], stream[3:17], stream[17:]]
    views = (np.array([0, 2, 16, 5]), np.array([4, 15, 2, 0]), np.arange(4))
    for name, ids in (("joined", stream), ("pieces", pieces)):
        with ShardWriter(tmp_path / name, np.uint8) as writer:
            writer.add_views(ids, *views)
            writer.add_views(ids, np.array([30]), np.array([5]), np.ones(1))
    for ext in ("bin", "idx", "meta.json"):
        joined, split = (tmp_path / f"{n}.{ext}" for n in ("joined", "pieces"))
        assert joined.read_bytes() == split.read_bytes(), ext
    assert read_meta(tmp_path / "pieces")["stored_tokens"] == 18 + 35
    with (
        pytest.raises(ValueError, match="are not views into 40 ids"),
        ShardWriter(tmp_path / "x", np.uint8) as w,
    ):
        w.add_views(pieces, np.array([38]), np.array([3]), np.zeros(1))
