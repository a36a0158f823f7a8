"""BGZF writing on several threads, byte for byte as htslib writes it.

Compressing is most of the cost of normalising a genome: zlib's default level deflates DNA text
at a few MB/s per core. BGZF blocks are independent gzip members, so they can be compressed in
parallel. `zlib.compress` releases the GIL, so a thread pool is enough. The blocks are cut and
deflated exactly as htslib's `bgzf_write` cuts and deflates them (65,280 bytes of input per
block, raw deflate with window 15 and memLevel 8, an empty block at the end), so at the same
level and zlib the file is the one `pysam.BGZFile` or `bgzip` writes. The writer also records
where every block starts, which is the `.gzi` index that `samtools faidx` would build by reading
the file back.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

import numpy as np

from dnalm.files import CommitOrAbort

__all__ = ["BLOCK_INPUT", "DEFAULT_LEVEL", "BgzfWriter", "compress_block"]

BLOCK_INPUT = 0xFF00  # htslib's BGZF_BLOCK_SIZE: input bytes per block
DEFAULT_LEVEL = 6  # zlib's Z_DEFAULT_COMPRESSION, which htslib uses when no level is given
_MAX_BLOCK = 0x10000  # a BGZF block, header and footer included, must fit in 64 KiB
# gzip member header with the BGZF extra field ('BC', 2 bytes: block size - 1); mtime 0, OS 255
_HEADER = struct.Struct("<4BI2BH2BHH")
_FOOTER = struct.Struct("<II")


def compress_block(data: bytes, level: int = DEFAULT_LEVEL) -> bytes:
    """One BGZF block holding `data` (at most BLOCK_INPUT bytes), as htslib's bgzf_compress."""
    if len(data) > BLOCK_INPUT:
        raise ValueError(f"a BGZF block holds at most {BLOCK_INPUT} bytes, got {len(data)}")
    body = zlib.compress(data, level, -15)  # raw deflate, memLevel 8: htslib's deflateInit2
    size = _HEADER.size + len(body) + _FOOTER.size
    if size > _MAX_BLOCK:  # deflate expands 65,280 bytes by a few dozen at most
        raise RuntimeError(f"deflate gave {len(body)} bytes for {len(data)}; not a BGZF block")
    header = _HEADER.pack(0x1F, 0x8B, 8, 4, 0, 0, 0xFF, 6, ord("B"), ord("C"), 2, size - 1)
    return header + body + _FOOTER.pack(zlib.crc32(data), len(data))


class BgzfWriter(CommitOrAbort):
    """A binary sink that writes BGZF to `fh`, compressing blocks on `threads` threads.

    `write_gzi` saves where every block starts as the `.gzi` that htslib's `bgzf_index_dump`
    writes. Not thread-safe itself: one producer writes.
    """

    def __init__(self, fh: BinaryIO, *, level: int = DEFAULT_LEVEL, threads: int = 1) -> None:
        if not isinstance(level, int) or not 0 <= level <= 9:
            raise ValueError(f"compression level must be an integer 0-9, got {level!r}")
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        self._fh = fh
        self._level = level
        self._buffer = bytearray()
        self._written = 0  # uncompressed bytes handed to blocks
        self._offset = 0  # compressed bytes written to fh
        self._starts: list[int] = []  # uncompressed offset of every block submitted
        self._coffsets: list[int] = []  # compressed offset of every block written
        self._pool = ThreadPoolExecutor(threads) if threads > 1 else None
        self._pending: deque[Future[bytes]] = deque()
        self._max_pending = 4 * threads  # bounds the memory held by blocks in flight
        self._closed = False

    def tell(self) -> int:
        """Uncompressed bytes written so far (the offset that the next write starts at)."""
        return self._written + len(self._buffer)

    def write(self, data: bytes | bytearray | memoryview | np.ndarray) -> None:
        """Append any contiguous buffer (bytes, or a numpy array of uint8)."""
        with memoryview(data) as view, view.cast("B") as flat:
            self._buffer += flat
        if len(self._buffer) < BLOCK_INPUT:
            return
        full = len(self._buffer) // BLOCK_INPUT * BLOCK_INPUT
        view = memoryview(self._buffer)
        try:
            for lo in range(0, full, BLOCK_INPUT):
                self._submit(bytes(view[lo : lo + BLOCK_INPUT]))
        finally:
            view.release()
        del self._buffer[:full]

    @property
    def blocks(self) -> list[tuple[int, int]]:
        """(compressed offset, uncompressed offset) of every block written so far."""
        return list(zip(self._coffsets, self._starts, strict=False))

    def _submit(self, block: bytes) -> None:
        self._starts.append(self._written)
        self._written += len(block)
        if self._pool is None:
            self._emit(compress_block(block, self._level))
            return
        self._pending.append(self._pool.submit(compress_block, block, self._level))
        while len(self._pending) > self._max_pending:
            self._emit(self._pending.popleft().result())

    def _emit(self, compressed: bytes) -> None:
        self._coffsets.append(self._offset)  # blocks are written in the order submitted
        self._fh.write(compressed)
        self._offset += len(compressed)

    def close(self) -> None:
        """Compress what is left, then the empty end-of-file block; the file is complete."""
        if self._closed:
            return
        try:
            if self._buffer:
                self._submit(bytes(self._buffer))
                self._buffer.clear()
            while self._pending:
                self._emit(self._pending.popleft().result())
            self._fh.write(compress_block(b"", self._level))
        finally:
            self._shutdown()

    commit = close  # the end of a clean `with` block

    def abort(self) -> None:
        """Stop without finishing the file (the caller discards it)."""
        self._pending.clear()
        self._shutdown()

    def _shutdown(self) -> None:
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def write_gzi(self, path: str | os.PathLike[str]) -> None:
        """The block offsets as htslib's .gzi: a count, then (compressed, uncompressed) pairs
        of every block but the first, little-endian uint64."""
        entries = self.blocks[1:]
        with open(path, "wb") as out:
            out.write(struct.pack("<Q", len(entries)))
            out.write(b"".join(struct.pack("<QQ", c, u) for c, u in entries))
