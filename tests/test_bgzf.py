"""BGZF: the writer's blocks (ISA-L or zlib) and the ISA-L reader of byte ranges, against
htslib's own reader on a real genome, and damaged files falling back to htslib's message."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pysam
import pytest
from conftest import SHARED_DATA, require_data

from dnalm.bgzf import BgzfReader, compress_block
from dnalm.corpus import _RegionReader
from dnalm.fasta import normalise_fasta

HUMAN = SHARED_DATA / "genomes" / "nonviral" / "Hsapiens_hg38_chr2_1-2333275.fa.gz"
# htslib's end-of-file marker: an empty BGZF block, which readers compare byte for byte
EOF_BLOCK = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


@pytest.fixture(scope="module", params=["isal", "zlib"])
def human(request, tmp_path_factory) -> Path:
    require_data(HUMAN)
    dest = tmp_path_factory.mktemp(request.param) / "hg38.fa.gz"
    normalise_fasta(HUMAN, dest, compressor=request.param, threads=2)
    return dest


@pytest.mark.parametrize("compressor", ["isal", "zlib"])
def test_blocks_are_gzip_members_and_the_last_is_htslib_eof(compressor: str) -> None:
    data = b"ACGTNacgtn\n" * 5000
    block = compress_block(data, 1, compressor)
    assert gzip.decompress(block) == data
    assert struct.unpack_from("<H", block, 16)[0] + 1 == len(block)  # BSIZE - 1
    assert compress_block(b"", 1, compressor) == EOF_BLOCK


def test_reader_gives_the_bytes_htslib_gives(human: Path) -> None:
    with pysam.BGZFile(str(human), "rb") as fh:
        text = fh.read()
    reader = BgzfReader(human)
    rng = np.random.default_rng(3)
    starts = [0, 1, 65_279, 65_280, 65_281, len(text) - 1, *rng.integers(0, len(text), 30)]
    for first in map(int, starts):
        for size in (1, 100, 65_280, 300_000):
            last = min(len(text), first + size)
            if last > first:
                assert b"".join(reader.read(first, last)) == text[first:last], (first, last)
    reader.close()


def _block_at(raw: bytes, index: int) -> int:
    at = 0
    for _ in range(index):
        at += struct.unpack_from("<H", raw, at + 16)[0] + 1
    return at


@pytest.mark.parametrize("damage", ["crc", "deflate", "size", "truncated"])
def test_damaged_blocks_fall_back_to_htslib_which_names_the_file(
    human: Path, tmp_path: Path, damage: str
) -> None:
    """The ISA-L reader gives up on any block that fails a check; htslib then reads the
    region or raises the located error, so that no damaged block yields wrong bases."""
    raw = bytearray(human.read_bytes())
    at = _block_at(raw, 3)
    end = at + struct.unpack_from("<H", raw, at + 16)[0] + 1
    if damage == "crc":
        raw[end - 8] ^= 0xFF
    elif damage == "deflate":
        raw[at + 40 : at + 60] = bytes(20)
    elif damage == "size":
        raw[end - 4] ^= 0x01
    else:
        del raw[at + 100 :]
    copy = tmp_path / "g.fa.gz"
    copy.write_bytes(raw)
    for ext in (".fai", ".gzi"):
        (tmp_path / f"g.fa.gz{ext}").write_bytes(Path(f"{human}{ext}").read_bytes())
    reader = BgzfReader(copy)
    assert reader.read(0, 5 * 65_280) is None
    assert b"".join(reader.read(0, 65_280)) == pysam.BGZFile(str(human)).read(65_280)
    reader.close()
    regions = _RegionReader(copy)
    if damage == "size":  # htslib does not read the size field: it inflates the right bases
        expected = _RegionReader(human).fetch("chr2", 0, 400_000)
        assert regions.fetch("chr2", 0, 400_000) == expected
    else:
        with pytest.raises(ValueError, match=r"g\.fa\.gz: cannot read chr2:0-400,000 .*again"):
            regions.read("chr2", 0, 400_000)
    regions.close()


def test_an_index_that_is_not_a_gzi_is_named(tmp_path: Path) -> None:
    path = tmp_path / "g.fa.gz"
    path.write_bytes(EOF_BLOCK)
    Path(f"{path}.gzi").write_bytes(struct.pack("<QQ", 5, 0))
    with pytest.raises(ValueError, match=r"g\.fa\.gz\.gzi: not a BGZF block index"):
        BgzfReader(path)
