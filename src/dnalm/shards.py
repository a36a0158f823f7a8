"""Token shards: a flat binary file of token ids plus an index, read by memory-mapping.

Training streams from these without re-tokenizing. `{prefix}.bin` holds the ids of every sequence
back to back; `{prefix}.idx` is a .npy structured array (offset, length, label), loaded with
`allow_pickle=False`; `{prefix}.meta.json` says the dtype, the tokenizer and the label names.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from dnalm.files import temporary_sibling, write_json

INDEX_DTYPE = np.dtype([("offset", "<i8"), ("length", "<i4"), ("label", "<i4")])
_FLUSH_ROWS = 65_536


class ShardWriter:
    """Append sequences to a shard without holding them in memory.

    Token ids go straight to `{prefix}.bin`; index rows are buffered in pieces of 64k and
    spilled to a temp file, then given their .npy header on commit. Both files appear (by
    `os.replace`) only when the `with` block ends cleanly; on an error nothing is left behind.
    """

    def __init__(self, prefix: str | Path, dtype: np.dtype | str) -> None:
        self.prefix = Path(prefix)
        self.dtype = np.dtype(dtype)
        self.count = 0
        self.tokens = 0
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self._final = {
            ext: self.prefix.with_name(f"{self.prefix.name}.{ext}") for ext in ("bin", "idx")
        }
        self._tmp = {
            ext: temporary_sibling(self.prefix.with_name(f"{self.prefix.name}.{ext}"))
            for ext in ("bin", "idx", "rows")
        }
        self._rows: list[tuple[int, int, int]] = []
        # Held open across add() calls; the writer itself is the context manager that closes them.
        self._bin = open(self._tmp["bin"], "wb")  # noqa: SIM115
        self._index = open(self._tmp["rows"], "wb")  # noqa: SIM115

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def add(self, ids: np.ndarray, label: int) -> None:
        """One sequence."""
        ids = np.ascontiguousarray(ids, dtype=self.dtype)
        self._bin.write(memoryview(ids).cast("B"))
        self._rows.append((self.tokens, len(ids), int(label)))
        self.tokens += len(ids)
        self.count += 1
        if len(self._rows) >= _FLUSH_ROWS:
            self._flush_rows()

    def add_many(self, ids: np.ndarray, lengths: np.ndarray, labels: np.ndarray) -> None:
        """Several sequences whose ids lie back to back in `ids` (one write, no per-row work)."""
        ids = np.ascontiguousarray(ids, dtype=self.dtype).reshape(-1)
        lengths = np.asarray(lengths, dtype=np.int64)
        if int(lengths.sum()) != len(ids) or len(lengths) != len(labels):
            raise ValueError(
                f"{self.prefix}: {len(ids)} ids, {len(lengths)} lengths summing to "
                f"{int(lengths.sum())} and {len(labels)} labels do not describe the same sequences"
            )
        self._flush_rows()
        rows = np.empty(len(lengths), dtype=INDEX_DTYPE)
        rows["offset"] = self.tokens + np.cumsum(lengths) - lengths
        rows["length"] = lengths
        rows["label"] = labels
        self._bin.write(memoryview(ids).cast("B"))
        self._index.write(rows.tobytes())
        self.tokens += len(ids)
        self.count += len(lengths)

    def _flush_rows(self) -> None:
        if self._rows:
            self._index.write(np.array(self._rows, dtype=INDEX_DTYPE).tobytes())
            self._rows.clear()

    def commit(self) -> None:
        """Write the index as .npy and move both files into place."""
        self._flush_rows()
        self._bin.close()
        self._index.close()
        try:
            header = {
                "descr": np.lib.format.dtype_to_descr(INDEX_DTYPE),
                "fortran_order": False,
                "shape": (self.count,),
            }
            with open(self._tmp["idx"], "wb") as out, open(self._tmp["rows"], "rb") as rows:
                np.lib.format.write_array_header_1_0(out, header)
                shutil.copyfileobj(rows, out, 1 << 20)
            os.replace(self._tmp["bin"], self._final["bin"])
            os.replace(self._tmp["idx"], self._final["idx"])
        finally:
            self.abort()

    def abort(self) -> None:
        """Close and remove the temp files (a no-op for files already moved into place)."""
        self._bin.close()
        self._index.close()
        for tmp in self._tmp.values():
            tmp.unlink(missing_ok=True)


def write_shard(
    prefix: str | Path, sequences: Iterable[tuple[np.ndarray, int]], dtype: np.dtype
) -> int:
    """Write (ids, label) pairs to `prefix.bin` + `prefix.idx` atomically; returns the count."""
    with ShardWriter(prefix, dtype) as writer:
        for ids, label in sequences:
            writer.add(ids, label)
    return writer.count


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
    write_json(meta_path(prefix), meta, sort_keys=True)


def read_meta(prefix: str | Path) -> dict:
    return json.loads(meta_path(prefix).read_text())
