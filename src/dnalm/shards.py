"""Token shards: token ids in one flat binary file plus an index, read by memory-mapping.

Training streams from these without re-tokenizing. A shard `prefix` is three files:

- `{prefix}.idx`: a .npy structured array (offset, length, label), one row per sequence (window)
  in table order, loaded with `allow_pickle=False`. Row i's ids are `bin[offset : offset + length]`.
- `{prefix}.bin`: the ids, in the dtype the meta names. Rows may share ids. For tokenizers whose
  tokens depend only on the bases they read (`char`, k-mers), the tokenize step stores the token
  stream of each span of a record that windows cover once, and each window's row is a view into
  it: one stream per strand (a minus-strand window reads the reverse complement's) and, for
  k-mers read every `stride` bases, one per phase (window start mod stride). With windows
  overlapping by half, the .bin holds each base once instead of twice. bpe windows, whose
  tokens depend on where they start, get one row each, back to back. Either way the .bin ends
  where the farthest-reaching row ends, which is what `TokenShard` checks its size against.
- `{prefix}.meta.json`: the dtype, the number of rows (`sequences`), of ids the rows read
  (`tokens`) and of ids stored (`stored_tokens`), the largest id, a CRC-32 of every 16 MiB block
  of the .bin and of the index rows (`checksum`), the tokenizer's kind, vocabulary size and a
  fingerprint of its vocabulary, and what the caller adds (labels, window length, ...).

Shards written before the meta recorded checksums (plain rows back to back, no `checksum`)
still open: their sizes are checked, their content is not (a logged note says so).

`TokenShard.open` checks a shard before training reads it, so that a damaged or stale shard stops
the job instead of training on garbage: the .bin's size against the meta and the index, the
meta's dtype against the vocabulary, the index's checksum, and the checksums of a few .bin blocks
(the first, the last and two others picked by the shard's own index checksum, so always the same
ones for one shard). `verify="full"`, or `DNALM_VERIFY_SHARDS=full` in the environment, checks
every block. Every error names the file, says what is wrong, and says how to rebuild the shard.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from isal import isal_zlib

from dnalm.files import CommitOrAbort, temporary_sibling, write_json

INDEX_DTYPE = np.dtype([("offset", "<i8"), ("length", "<i4"), ("label", "<i4")])
FORMAT = 2
CHECKSUM_ALGORITHM = "crc32"
# One checksum per block of the .bin: a sampled check reads a few blocks, a full one all of them.
CHECKSUM_BLOCK_BYTES = 16 << 20
SAMPLED_BLOCKS = 2  # besides the first and the last
VERIFY_ENV = "DNALM_VERIFY_SHARDS"
VERIFY_MODES = ("sample", "full")
_FLUSH_ROWS = 65_536
_INDEX_HEADER_BYTES = 192  # a multiple of 64 that holds any row count

log = logging.getLogger("dnalm.shards")


class ShardError(ValueError):
    """A shard that must not be trained on: damaged, stale, or written for another tokenizer."""


def _paths(prefix: str | Path) -> dict[str, Path]:
    prefix = Path(prefix)
    return {ext: prefix.with_name(f"{prefix.name}.{ext}") for ext in ("bin", "idx", "meta.json")}


def _rebuild(prefix: str | Path) -> str:
    files = ", ".join(str(p) for p in _paths(prefix).values())
    return (
        f"delete the shard ({files}) and rerun its tokenize job "
        "(snakemake --forcerun tokenize, or remove the files and run snakemake again)"
    )


class _BlockChecksums:
    """CRC-32 of every `block_bytes` bytes of a stream written piece by piece."""

    def __init__(self, block_bytes: int) -> None:
        self.block_bytes = int(block_bytes)
        self.done: list[str] = []
        self._crc = 0
        self._fill = 0

    def update(self, data: memoryview) -> None:
        at = 0
        while at < len(data):
            take = min(len(data) - at, self.block_bytes - self._fill)
            self._crc = isal_zlib.crc32(data[at : at + take], self._crc)
            self._fill += take
            at += take
            if self._fill == self.block_bytes:
                self._close_block()

    def _close_block(self) -> None:
        self.done.append(f"{self._crc:08x}")
        self._crc = 0
        self._fill = 0

    def finish(self) -> list[str]:
        if self._fill:
            self._close_block()
        return self.done


class ShardWriter(CommitOrAbort):
    """Append sequences to a shard without holding them in memory.

    Token ids go straight to the .bin (checksummed block by block as they pass); index rows are
    buffered in pieces of 64k and written after a fixed-size .npy header that commit fills in
    with the row count. The .bin, .idx and .meta.json appear together (renamed in that order)
    only when the `with` block ends cleanly; on an error nothing is left behind. `meta` (and
    anything added to `writer.meta` before the block ends) goes into the .meta.json beside what
    the writer records.
    """

    def __init__(
        self,
        prefix: str | Path,
        dtype: np.dtype | str,
        *,
        meta: Mapping[str, Any] | None = None,
        checksum_block_bytes: int = CHECKSUM_BLOCK_BYTES,
    ) -> None:
        self.prefix = Path(prefix)
        self.dtype = np.dtype(dtype)
        if checksum_block_bytes < 8 or checksum_block_bytes % 8:
            # whole ids per block, whatever the dtype: a block's ids can be read on their own
            raise ValueError(
                f"checksum blocks must be a positive multiple of 8 bytes, not "
                f"{checksum_block_bytes}"
            )
        self.meta: dict[str, Any] = dict(meta or {})
        self.count = 0  # rows
        self.tokens = 0  # ids stored in the .bin
        self.row_tokens = 0  # ids the rows read (more than `tokens` where rows share ids)
        self.max_id: int | None = None
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self._final = _paths(self.prefix)
        self._tmp = {ext: temporary_sibling(path) for ext, path in self._final.items()}
        self._rows: list[tuple[int, int, int]] = []
        self._checksums = _BlockChecksums(checksum_block_bytes)
        self._index_crc = 0
        # Held open across add() calls; the writer itself is the context manager that closes them.
        self._bin = open(self._tmp["bin"], "wb")  # noqa: SIM115
        self._index = open(self._tmp["idx"], "wb")  # noqa: SIM115
        self._index.write(_index_header(0))  # rewritten with the count on commit

    def _write_ids(self, ids: np.ndarray) -> int:
        """Append ids to the .bin; returns the offset of the first."""
        offset = self.tokens
        if len(ids):
            data = memoryview(ids).cast("B")
            self._bin.write(data)
            self._checksums.update(data)
            top = int(ids.max())
            self.max_id = top if self.max_id is None else max(self.max_id, top)
            self.tokens += len(ids)
        return offset

    def add(self, ids: np.ndarray, label: int) -> None:
        """One sequence."""
        ids = np.ascontiguousarray(ids, dtype=self.dtype).reshape(-1)
        offset = self._write_ids(ids)
        self._rows.append((offset, len(ids), int(label)))
        self.row_tokens += len(ids)
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
        self.add_views(ids, np.cumsum(lengths) - lengths, lengths, labels)

    def add_views(
        self,
        ids: np.ndarray | Sequence[np.ndarray],
        offsets: np.ndarray,
        lengths: np.ndarray,
        labels: np.ndarray,
    ) -> None:
        """Sequences that are views into `ids`, which is stored once: sequence i is
        `ids[offsets[i] : offsets[i] + lengths[i]]`. Overlapping views share their ids.
        `ids` may come in pieces, stored one after the other as if joined (no joined copy)."""
        pieces = [ids] if isinstance(ids, np.ndarray) else list(ids)
        pieces = [np.ascontiguousarray(p, dtype=self.dtype).reshape(-1) for p in pieces]
        total = sum(len(p) for p in pieces)
        offsets = np.asarray(offsets, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        ends = offsets + lengths
        if not len(offsets) == len(lengths) == len(labels) or (
            len(offsets) and (offsets.min() < 0 or lengths.min() < 0 or ends.max() > total)
        ):
            raise ValueError(
                f"{self.prefix}: {len(offsets)} offsets, {len(lengths)} lengths and "
                f"{len(labels)} labels are not views into {total} ids"
            )
        # Store no ids past the farthest-reaching view: the .bin then ends where its index says.
        top = int(ends.max()) if len(ends) else 0
        base, left = self.tokens, top
        for piece in pieces:
            if left <= 0:
                break
            self._write_ids(piece[:left])
            left -= len(piece)
        self._flush_rows()
        rows = np.empty(len(lengths), dtype=INDEX_DTYPE)
        rows["offset"] = base + np.minimum(offsets, top)
        rows["length"] = lengths
        rows["label"] = labels
        self._write_rows(rows)
        self.row_tokens += int(lengths.sum())
        self.count += len(lengths)

    def _write_rows(self, rows: np.ndarray) -> None:
        data = rows.tobytes()
        self._index.write(data)
        self._index_crc = isal_zlib.crc32(data, self._index_crc)

    def _flush_rows(self) -> None:
        if self._rows:
            self._write_rows(np.array(self._rows, dtype=INDEX_DTYPE))
            self._rows.clear()

    def commit(self) -> None:
        """Give the index its row count, write the meta, and move the three files into place
        (the meta last: its presence means the other two are complete)."""
        self._flush_rows()
        self._index.seek(0)
        self._index.write(_index_header(self.count))
        self._bin.close()
        self._index.close()
        renamed: list[Path] = []
        try:
            meta = self.meta | {
                "format": FORMAT,
                "dtype": self.dtype.name,
                "sequences": self.count,
                "tokens": self.row_tokens,
                "stored_tokens": self.tokens,
                "max_token_id": self.max_id,
                "checksum": {
                    "algorithm": CHECKSUM_ALGORITHM,
                    "block_bytes": self._checksums.block_bytes,
                    "bin_bytes": self.tokens * self.dtype.itemsize,
                    "bin": self._checksums.finish(),
                    "idx": f"{self._index_crc:08x}",
                },
            }
            self._tmp["meta.json"].write_text(_meta_text(meta))
            for ext, final in self._final.items():  # as dnalm.files.atomic_paths does
                os.replace(self._tmp[ext], final)
                renamed.append(final)
        except BaseException:
            for path in renamed:
                path.unlink(missing_ok=True)
            raise
        finally:
            self.abort()

    def abort(self) -> None:
        """Close and remove the temp files (a no-op for files already moved into place)."""
        self._bin.close()
        self._index.close()
        for tmp in self._tmp.values():
            tmp.unlink(missing_ok=True)


def write_shard(
    prefix: str | Path,
    sequences: Iterable[tuple[np.ndarray, int]],
    dtype: np.dtype,
    meta: Mapping[str, Any] | None = None,
) -> int:
    """Write (ids, label) pairs to a shard atomically; returns the count."""
    with ShardWriter(prefix, dtype, meta=meta) as writer:
        for ids, label in sequences:
            writer.add(ids, label)
    return writer.count


def _index_header(count: int) -> bytes:
    """The .npy (version 1.0) header of `count` index rows, padded with spaces to a fixed size,
    as the format allows: the rows can then be written after it before their count is known."""
    text = (
        f"{{'descr': {np.lib.format.dtype_to_descr(INDEX_DTYPE)!r}, 'fortran_order': False, "
        f"'shape': ({count},), }}"
    )
    text = text.ljust(_INDEX_HEADER_BYTES - 11) + "\n"
    return np.lib.format.MAGIC_PREFIX + bytes([1, 0]) + struct.pack("<H", len(text)) + text.encode()


def _meta_text(meta: Mapping[str, Any]) -> str:
    return json.dumps(meta, indent=2, sort_keys=True) + "\n"


class TokenShard:
    """Memory-mapped view of one shard: `shard[i]` is the ids of sequence i.

    The constructor reads the index and checks the .bin's size against it (a truncated or
    extended .bin fails here); `open` checks the rest before training trusts the shard.
    """

    def __init__(self, prefix: str | Path, dtype: np.dtype | str) -> None:
        self.prefix = Path(prefix)
        self.paths = _paths(prefix)
        self.meta: dict = {}
        self.dtype = np.dtype(dtype)
        raw = _read_bytes(self.paths["idx"], self.prefix)
        self.index, body = _parse_index(raw, self.paths["idx"], self.prefix)
        self.index_checksum = f"{isal_zlib.crc32(memoryview(raw)[body:]):08x}"
        size = _file_size(self.paths["bin"], self.prefix)
        _check_bin_size(self.paths["bin"], size, self.index, self.dtype, self.prefix)
        if size == 0:
            self.tokens = np.zeros(0, dtype=self.dtype)
        else:
            self.tokens = np.memmap(self.paths["bin"], dtype=self.dtype, mode="r")

    @classmethod
    def open(cls, prefix: str | Path, verify: str | None = None) -> TokenShard:
        """Open a shard with the dtype its `.meta.json` records, after checking it.

        `verify`: "sample" (the default) checks the first, the last and two more blocks of the
        .bin against their checksums; "full" checks every block. Without `verify`, the
        environment's DNALM_VERIFY_SHARDS decides, so a user can ask for full checks in every job.
        """
        mode = verify_mode(verify)
        paths = _paths(prefix)
        meta = read_meta(prefix)
        dtype = _meta_dtype(meta, paths["meta.json"], prefix)
        record = meta.get("checksum")
        if record is not None:
            _check_recorded_sizes(meta, record, dtype, paths, prefix)
        shard = cls(prefix, dtype)
        shard.meta = meta
        if record is None:
            log.warning(
                "%s: written before shards recorded checksums; its sizes are checked, its content "
                "is not (rerun its tokenize job to add them)",
                paths["bin"],
            )
        else:
            if shard.index_checksum != record.get("idx"):
                raise ShardError(
                    f"{paths['idx']}: the index fails its checksum (crc32 {shard.index_checksum}, "
                    f"the meta records {record.get('idx')}): it changed after it was written; "
                    f"{_rebuild(prefix)}"
                )
            shard.verify_blocks(range(len(record["bin"])) if mode == "full" else None)
        return shard

    def verify_blocks(self, blocks: Iterable[int] | None = None) -> None:
        """Check .bin blocks against the checksums in the meta (default: `sampled_blocks`), and
        that their ids fit the vocabulary."""
        record = self.meta.get("checksum")
        if record is None:
            return
        sums, block = record["bin"], int(record["block_bytes"])
        picks = sampled_blocks(self.meta) if blocks is None else list(blocks)
        vocab = self.meta.get("vocab_size")
        bin_path = self.paths["bin"]
        buf = bytearray(block)
        with open(bin_path, "rb") as fh:
            for b in picks:
                fh.seek(b * block)
                view = memoryview(buf)[: fh.readinto(buf)]
                crc = f"{isal_zlib.crc32(view):08x}"
                if crc != sums[b]:
                    raise ShardError(
                        f"{bin_path}: block {b} of {len(sums)} (bytes {b * block:,}-"
                        f"{b * block + len(view):,}) fails its checksum (crc32 {crc}, the meta "
                        f"records {sums[b]}): the file changed after it was written; "
                        f"{_rebuild(self.prefix)}"
                    )
                ids = np.frombuffer(view, dtype=self.dtype)
                if vocab is not None and len(ids) and int(ids.max()) >= int(vocab):
                    raise ShardError(
                        f"{bin_path}: block {b} holds id {int(ids.max())}, outside the "
                        f"{vocab}-token vocabulary its meta records; {_rebuild(self.prefix)}"
                    )

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


def verify_mode(verify: str | None = None) -> str:
    """The check `TokenShard.open` runs: `verify`, else $DNALM_VERIFY_SHARDS, else "sample"."""
    source = "verify"
    if verify is None:
        verify, source = os.environ.get(VERIFY_ENV) or "sample", VERIFY_ENV
    if verify not in VERIFY_MODES:
        raise ValueError(f"{source}={verify!r}: choose one of {', '.join(VERIFY_MODES)}")
    return verify


def sampled_blocks(meta: Mapping[str, Any]) -> list[int]:
    """The .bin blocks the default check reads: the first, the last and `SAMPLED_BLOCKS` more,
    drawn with the index's checksum as seed (always the same ones for one shard)."""
    record = meta["checksum"]
    n = len(record["bin"])
    if n <= SAMPLED_BLOCKS + 2:
        return list(range(n))
    middle = random.Random(str(record["idx"])).sample(range(1, n - 1), SAMPLED_BLOCKS)
    return sorted({0, n - 1, *middle})


def _read_bytes(path: Path, prefix: str | Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ShardError(f"{path} is missing; {_rebuild(prefix)}") from None


def _file_size(path: Path, prefix: str | Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        raise ShardError(f"{path} is missing; {_rebuild(prefix)}") from None


def _parse_index(raw: bytes, path: Path, prefix: str | Path) -> tuple[np.ndarray, int]:
    """The .idx's rows (read-only, without a copy) and where they start in the file; a damaged
    file fails with its sizes."""
    stream = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(stream)
    except ValueError as exc:
        raise ShardError(f"{path} is not a shard index ({exc}); {_rebuild(prefix)}") from None
    if dtype != INDEX_DTYPE or len(shape) != 1 or fortran:
        raise ShardError(
            f"{path} holds {shape} of {dtype}, not rows of {INDEX_DTYPE}; {_rebuild(prefix)}"
        )
    body = len(raw) - stream.tell()
    if body != shape[0] * INDEX_DTYPE.itemsize:
        raise ShardError(
            f"{path} is damaged: its header says {shape[0]:,} rows ({shape[0] * 16:,} bytes) but "
            f"{body:,} bytes follow it; {_rebuild(prefix)}"
        )
    index = np.frombuffer(raw, dtype=INDEX_DTYPE, count=shape[0], offset=stream.tell())
    return index, stream.tell()


def _check_bin_size(
    path: Path, size: int, index: np.ndarray, dtype: np.dtype, prefix: str | Path
) -> None:
    """The .bin ends where the farthest-reaching row of the index ends."""
    if len(index) and (index["offset"].min() < 0 or index["length"].min() < 0):
        raise ShardError(
            f"{_paths(prefix)['idx']} holds negative offsets or lengths; {_rebuild(prefix)}"
        )
    need = int((index["offset"] + index["length"]).max()) if len(index) else 0
    item = dtype.itemsize
    if size % item or size // item != need:
        what = "truncated" if size < need * item else "longer than its index says"
        raise ShardError(
            f"{path} is {what}: it holds {size:,} bytes, but its index "
            f"({len(index):,} rows) reads {need:,} {dtype.name} ids = {need * item:,} bytes; "
            f"{_rebuild(prefix)}"
        )


def _meta_dtype(meta: Mapping[str, Any], path: Path, prefix: str | Path) -> np.dtype:
    """The meta's dtype, checked against the vocabulary and the largest id it records."""
    try:
        dtype = np.dtype(meta["dtype"])
    except (KeyError, TypeError) as exc:
        raise ShardError(f"{path}: no valid dtype ({exc}); {_rebuild(prefix)}") from None
    if dtype.kind not in "ui":
        raise ShardError(f"{path}: dtype {dtype.name} is not an integer type; {_rebuild(prefix)}")
    vocab, top = meta.get("vocab_size"), meta.get("max_token_id")
    if vocab is not None and np.iinfo(dtype).max < int(vocab) - 1:
        raise ShardError(
            f"{path}: dtype {dtype.name} holds ids up to {np.iinfo(dtype).max}, but the "
            f"vocabulary has {vocab} tokens; {_rebuild(prefix)}"
        )
    if vocab is not None and top is not None and int(top) >= int(vocab):
        raise ShardError(
            f"{path}: the shard holds id {top}, outside its {vocab}-token vocabulary; "
            f"{_rebuild(prefix)}"
        )
    return dtype


def _check_recorded_sizes(
    meta: Mapping[str, Any],
    record: Mapping[str, Any],
    dtype: np.dtype,
    paths: Mapping[str, Path],
    prefix: str | Path,
) -> None:
    """The .bin's size against what the writer recorded, and the meta's dtype against both."""
    wrote, block = int(record["bin_bytes"]), int(record["block_bytes"])
    if block < 8 or len(record["bin"]) != -(-wrote // block):
        raise ShardError(
            f"{paths['meta.json']}: its checksums ({len(record['bin'])} blocks of {block:,} "
            f"bytes) do not cover the {wrote:,} bytes it says were written; {_rebuild(prefix)}"
        )
    size = _file_size(paths["bin"], prefix)
    if size != wrote:
        what = "truncated" if size < wrote else "longer than when it was written"
        raise ShardError(
            f"{paths['bin']} is {what}: it holds {size:,} bytes, its meta "
            f"({paths['meta.json']}) records {wrote:,}; {_rebuild(prefix)}"
        )
    stored = int(meta.get("stored_tokens", -1))
    if stored * dtype.itemsize != wrote:
        raise ShardError(
            f"{paths['meta.json']}: dtype {dtype.name} ({dtype.itemsize} bytes per id) does not "
            f"match the shard: {stored:,} ids were written as {wrote:,} bytes; "
            f"{_rebuild(prefix)}"
        )


def check_shard_tokenizer(shard: TokenShard, tokenizer: Any) -> None:
    """Fail unless `shard` was written with `tokenizer` (kind, options and vocabulary).

    A tokenizer rebuilt after its shards (another k, a retrained bpe) gives ids that mean other
    tokens: the model would train without error on the wrong text. Shards written before the
    meta recorded a fingerprint are checked on the vocabulary size alone (a logged note).
    """
    from dnalm.tokenization import tokenizer_spec

    meta = shard.meta
    size = len(tokenizer)
    name = getattr(tokenizer, "name_or_path", "") or "the tokenizer"
    problems = []
    recorded = meta.get("vocab_size")
    if recorded is not None and int(recorded) != size:
        problems.append(f"its meta records a {recorded}-token vocabulary, {name} has {size}")
    spec = meta.get("tokenizer_spec")
    if spec is not None and spec != tokenizer_spec(tokenizer):
        problems.append(f"it was tokenized as {spec}, {name} is {tokenizer_spec(tokenizer)}")
    fingerprint = meta.get("vocab_fingerprint")
    if fingerprint is not None and fingerprint != vocabulary_fingerprint(tokenizer):
        problems.append(f"its vocabulary fingerprint differs from that of {name}")
    top = meta.get("max_token_id")
    if top is not None and int(top) >= size:
        problems.append(f"it holds id {top}, outside the {size}-token vocabulary of {name}")
    if problems:
        raise ShardError(
            f"{shard.paths['bin']} was written for another tokenizer: {'; '.join(problems)}; "
            f"{_rebuild(shard.prefix)}"
        )
    if fingerprint is None:
        log.warning(
            "%s: written before shards recorded their tokenizer; only its vocabulary size is "
            "checked against %s (rerun its tokenize job to record it)",
            shard.paths["bin"],
            name,
        )


def vocabulary_fingerprint(tokenizer: Any) -> str:
    """sha256 of what maps text to ids: the tokenizer's kind and options, its vocabulary in id
    order and, for bpe, its merges (as pairs, whatever the `tokenizers` version wrote)."""
    from dnalm.tokenization import tokenizer_spec

    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    payload: dict[str, Any] = {"spec": tokenizer_spec(tokenizer), "vocab": vocab}
    model = json.loads(tokenizer.backend_tokenizer.to_str()).get("model", {})
    if model.get("merges"):
        payload["merges"] = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def shard_digest(prefix: str | Path) -> str:
    """A digest of a shard's content, for resume fingerprints, without reading the .bin.

    The index is hashed (it is small), the .bin by the per-block checksums its meta records,
    plus its size on disk, the dtype, the labels and the tokenizer's fingerprint. A shard
    written before checksums were recorded has its whole .bin hashed instead (a logged note).
    """
    paths = _paths(prefix)
    meta = read_meta(prefix)
    digest = hashlib.sha256(_read_bytes(paths["idx"], prefix))
    content = {
        key: meta.get(key)
        for key in ("dtype", "stored_tokens", "labels", "tokenizer_spec", "vocab_fingerprint")
    }
    content["bin_bytes_on_disk"] = _file_size(paths["bin"], prefix)
    record = meta.get("checksum")
    if record is not None:
        content["checksum"] = {
            key: record.get(key) for key in ("algorithm", "block_bytes", "bin_bytes", "bin")
        }
    else:
        log.warning(
            "%s: no checksums in its meta (written before they were recorded); hashing the "
            "whole file for its digest",
            paths["bin"],
        )
        whole = hashlib.sha256()
        with open(paths["bin"], "rb") as fh:
            while chunk := fh.read(1 << 20):
                whole.update(chunk)
        content["bin_sha256"] = whole.hexdigest()
    digest.update(json.dumps(content, sort_keys=True).encode())
    return digest.hexdigest()


def meta_path(prefix: str | Path) -> Path:
    return _paths(prefix)["meta.json"]


def write_meta(prefix: str | Path, meta: Mapping[str, Any]) -> None:
    """Add `meta`'s fields to the shard's `.meta.json`.

    What the writer recorded (sizes, checksums, dtype) stays unless `meta` names it: a caller
    describes the shard, it does not drop the record that guards it.
    """
    path = meta_path(prefix)
    current = read_meta(prefix) if path.exists() else {}
    write_json(path, current | dict(meta), sort_keys=True)


def read_meta(prefix: str | Path) -> dict:
    path = meta_path(prefix)
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise ShardError(f"{path} is missing; {_rebuild(prefix)}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ShardError(f"{path} is not valid JSON ({exc}); {_rebuild(prefix)}") from None
    if not isinstance(meta, dict):
        raise ShardError(f"{path} is not a JSON object; {_rebuild(prefix)}")
    return meta
