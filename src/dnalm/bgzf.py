"""BGZF writing on several threads, with ISA-L or, byte for byte as htslib writes it, zlib.

Compressing is most of the cost of normalising a genome: zlib's default level deflates DNA text
at about 7 MB/s per core. ISA-L's level 1 (`isal`, the default) deflates it at about 300 MB/s
into files 6-7% larger than zlib's level 6 (and smaller than zlib's level 1). BGZF blocks are
independent gzip members, so they can also be compressed in parallel; both libraries release the
GIL, so a thread pool is enough. The blocks are cut exactly as htslib's `bgzf_write` cuts them
(65,280 bytes of input per block, raw deflate, the 28-byte empty block at the end); with `zlib`
they are also deflated as htslib deflates them (window 15, memLevel 8), so at the same level the
file is the one `pysam.BGZFile` or `bgzip` writes. The writer also records where every block
starts, which is the `.gzi` index that `samtools faidx` would build by reading the file back.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

import numpy as np
from isal import isal_zlib

from dnalm.files import CommitOrAbort

__all__ = [
    "BLOCK_INPUT",
    "BgzfReader",
    "COMPRESSORS",
    "DEFAULT_COMPRESSOR",
    "BgzfWriter",
    "compress_block",
    "compression_level",
]

BLOCK_INPUT = 0xFF00  # htslib's BGZF_BLOCK_SIZE: input bytes per block
# compressor: (lowest level, highest level, default level). zlib's default is its
# Z_DEFAULT_COMPRESSION, which htslib uses when no level is given.
COMPRESSORS: dict[str, tuple[int, int, int]] = {"isal": (0, 3, 1), "zlib": (1, 9, 6)}
DEFAULT_COMPRESSOR = "isal"
_DEFLATE = {"isal": isal_zlib.compress, "zlib": zlib.compress}
_MAX_BLOCK = 0x10000  # a BGZF block, header and footer included, must fit in 64 KiB
# gzip member header with the BGZF extra field ('BC', 2 bytes: block size - 1); mtime 0, OS 255
_HEADER = struct.Struct("<4BI2BH2BHH")
_FOOTER = struct.Struct("<II")
_MAGIC = b"\x1f\x8b\x08\x04"  # gzip, deflate, FEXTRA set


def compression_level(compressor: str, level: int | None = None) -> int:
    """`level`, or the compressor's default when None; a clear error for either out of range."""
    if compressor not in COMPRESSORS:
        raise ValueError(f"compressor must be one of {sorted(COMPRESSORS)}, got {compressor!r}")
    lowest, highest, default = COMPRESSORS[compressor]
    if level is None:
        return default
    if isinstance(level, bool) or not isinstance(level, int) or not lowest <= level <= highest:
        raise ValueError(
            f"compress_level for {compressor} must be an integer {lowest}-{highest}, got {level!r}"
        )
    return level


def compress_block(data: bytes, level: int = 6, compressor: str = "zlib") -> bytes:
    """One BGZF block holding `data` (at most BLOCK_INPUT bytes); with zlib, as htslib's
    bgzf_compress writes it. The empty block is always zlib's: it is BGZF's end-of-file marker,
    which readers compare byte for byte."""
    if len(data) > BLOCK_INPUT:
        raise ValueError(f"a BGZF block holds at most {BLOCK_INPUT} bytes, got {len(data)}")
    deflate = _DEFLATE[compressor] if data else zlib.compress
    body = deflate(data, level, -15)  # raw deflate; zlib's memLevel 8 is htslib's deflateInit2
    size = _HEADER.size + len(body) + _FOOTER.size
    if size > _MAX_BLOCK:  # deflate expands 65,280 bytes by a few dozen at most
        raise RuntimeError(f"deflate gave {len(body)} bytes for {len(data)}; not a BGZF block")
    header = _HEADER.pack(0x1F, 0x8B, 8, 4, 0, 0, 0xFF, 6, ord("B"), ord("C"), 2, size - 1)
    return header + body + _FOOTER.pack(isal_zlib.crc32(data), len(data))


class BgzfWriter(CommitOrAbort):
    """A binary sink that writes BGZF to `fh`, compressing blocks on `threads` threads.

    `write_gzi` saves where every block starts as the `.gzi` that htslib's `bgzf_index_dump`
    writes. Not thread-safe itself: one producer writes.
    """

    def __init__(
        self,
        fh: BinaryIO,
        *,
        compressor: str = DEFAULT_COMPRESSOR,
        level: int | None = None,
        threads: int = 1,
    ) -> None:
        self._level = compression_level(compressor, level)
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        self._fh = fh
        self._compressor = compressor
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
            self._emit(compress_block(block, self._level, self._compressor))
            return
        task = self._pool.submit(compress_block, block, self._level, self._compressor)
        self._pending.append(task)
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
            self._fh.write(compress_block(b""))
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


class BgzfReader:
    """Uncompressed byte ranges of a BGZF file, found through its `.gzi` and inflated by ISA-L.

    htslib (and so `pysam.BGZFile`) inflates with zlib; ISA-L inflates DNA about twice as fast,
    which is most of the time that tokenizing a genome takes. A range is read as the compressed
    bytes of the blocks it spans, in one call, then each block is inflated, its size and CRC
    checked. `read` returns None where the file does not match the index or a block is not
    BGZF: the caller then reads the range with htslib, which names the problem.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        gzi = np.fromfile(f"{os.fspath(path)}.gzi", dtype="<u8")
        if len(gzi) != 1 + 2 * int(gzi[0] if len(gzi) else 0):
            raise ValueError(f"{os.fspath(path)}.gzi: not a BGZF block index (htslib's .gzi)")
        pairs = gzi[1:].reshape(-1, 2).astype(np.int64)
        # block starts, compressed and uncompressed; the first block (0, 0) is implicit
        self.compressed = np.concatenate([[0], pairs[:, 0]])
        self.uncompressed = np.concatenate([[0], pairs[:, 1]])
        self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._size = os.fstat(self._fh.fileno()).st_size

    def read(self, first: int, last: int) -> list[bytes] | None:
        """Uncompressed bytes [first, last) (last > first) as one piece per block, in order,
        or None (see the class). Joining them is left to callers that need one buffer: a
        translate per piece costs what one over the whole range does, without its copy."""
        lo = int(np.searchsorted(self.uncompressed, first, side="right")) - 1
        hi = int(np.searchsorted(self.uncompressed, last - 1, side="right"))  # blocks [lo, hi)
        start = int(self.compressed[lo])
        stop = int(self.compressed[hi]) if hi < len(self.compressed) else self._size
        self._fh.seek(start)
        raw = self._fh.read(stop - start)
        parts = []
        at = 0
        expected = int(self.uncompressed[lo])
        for block in range(lo, hi):
            if raw[at : at + 4] != _MAGIC or len(raw) < at + _HEADER.size:
                return None
            fields = _HEADER.unpack_from(raw, at)
            if fields[7:11] != (6, ord("B"), ord("C"), 2):  # XLEN 6: the BC subfield alone
                return None
            end = at + fields[11] + 1
            if end > len(raw) or (
                block + 1 < hi and int(self.compressed[block + 1]) - start != end
            ):
                return None
            crc, size = _FOOTER.unpack_from(raw, end - _FOOTER.size)
            body = memoryview(raw)[at + _HEADER.size : end - _FOOTER.size]
            try:
                data = isal_zlib.decompress(body, -15, size or 1)
            except isal_zlib.error:
                return None
            if len(data) != size or isal_zlib.crc32(data) != crc:
                return None
            if block + 1 < hi and expected + size != int(self.uncompressed[block + 1]):
                return None
            expected += size
            parts.append(data)
            at = end
        if expected < last:
            return None
        # the end blocks trimmed to the range
        parts[-1] = parts[-1][: len(parts[-1]) - (expected - last)]
        parts[0] = parts[0][first - int(self.uncompressed[lo]) :]
        return parts

    def close(self) -> None:
        self._fh.close()
