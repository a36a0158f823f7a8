import numpy as np
import pytest

from dnalm.shards import TokenShard, read_meta, write_meta, write_shard


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
