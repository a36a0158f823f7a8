import numpy as np

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
