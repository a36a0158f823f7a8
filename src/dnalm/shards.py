"""Token shards: a flat binary file of token ids plus an index, read by memory-mapping.

Training streams from these without re-tokenizing. `{prefix}.bin` holds the ids of every sequence
back to back; `{prefix}.idx` is a .npy structured array (offset, length, label), loaded with
`allow_pickle=False`; `{prefix}.meta.json` says the dtype, the tokenizer and the label names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

INDEX_DTYPE = np.dtype([("offset", "<i8"), ("length", "<i4"), ("label", "<i4")])


def write_shard(
    prefix: str | Path, sequences: Iterable[tuple[np.ndarray, int]], dtype: np.dtype
) -> int:
    """Write (ids, label) pairs to `prefix.bin` + `prefix.idx` atomically; returns the count."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    bin_tmp = prefix.with_name(prefix.name + ".bin.tmp")
    idx_tmp = prefix.with_name(prefix.name + ".idx.tmp")
    index: list[tuple[int, int, int]] = []
    offset = 0
    try:
        with open(bin_tmp, "wb") as out:
            for ids, label in sequences:
                ids = np.ascontiguousarray(ids, dtype=dtype)
                out.write(ids.tobytes())
                index.append((offset, len(ids), int(label)))
                offset += len(ids)
        with open(idx_tmp, "wb") as out:
            np.save(out, np.array(index, dtype=INDEX_DTYPE), allow_pickle=False)
        os.replace(bin_tmp, prefix.with_name(prefix.name + ".bin"))
        os.replace(idx_tmp, prefix.with_name(prefix.name + ".idx"))
    finally:
        for tmp in (bin_tmp, idx_tmp):
            tmp.unlink(missing_ok=True)
    return len(index)


class TokenShard:
    """Memory-mapped view of one shard: `shard[i]` is the ids of sequence i."""

    def __init__(self, prefix: str | Path, dtype: np.dtype | str):
        prefix = Path(prefix)
        self.prefix = prefix
        self.meta: dict = {}
        self.index = np.load(prefix.with_name(prefix.name + ".idx"), allow_pickle=False)
        bin_path = prefix.with_name(prefix.name + ".bin")
        self.dtype = np.dtype(dtype)
        if os.path.getsize(bin_path) == 0:
            self.tokens = np.zeros(0, dtype=self.dtype)
        else:
            self.tokens = np.memmap(bin_path, dtype=self.dtype, mode="r")

    @classmethod
    def open(cls, prefix: str | Path) -> TokenShard:
        """Open a shard with the dtype recorded in its `.meta.json`."""
        meta = read_meta(prefix)
        shard = cls(prefix, meta["dtype"])
        shard.meta = meta
        return shard

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray:
        row = self.index[i]
        return np.asarray(self.tokens[row["offset"] : row["offset"] + row["length"]])

    @property
    def labels(self) -> np.ndarray:
        return self.index["label"]

    @property
    def lengths(self) -> np.ndarray:
        return self.index["length"]

    def batch(
        self, rows: np.ndarray, pad_id: int, length: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded (ids, attention mask) for the given rows, cut to `length` if given."""
        lens = self.lengths[rows]
        width = int(length or lens.max())
        ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for j, r in enumerate(rows):
            seq = self[int(r)][:width]
            ids[j, : len(seq)] = seq
            mask[j, : len(seq)] = 1
        return ids, mask


def meta_path(prefix: str | Path) -> Path:
    prefix = Path(prefix)
    return prefix.with_name(prefix.name + ".meta.json")


def write_meta(prefix: str | Path, meta: dict) -> None:
    path = meta_path(prefix)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_meta(prefix: str | Path) -> dict:
    return json.loads(meta_path(prefix).read_text())
