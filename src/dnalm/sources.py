"""Where a genome or sample comes from: the sheet's `source` field.

One string names the source so that a sheet stays one row per genome:
- a path to a local FASTA (plain, gzip or bgzip), relative to the working directory;
- `simulated:<profile>?length=..&seed=..&family=..&records=..` (profiles: virus, host): a
  seeded synthetic genome, used by the offline default;
- `simulated:metagenome?seed=..&contigs=..&min_length=..&max_length=..&virus_fraction=..`: a
  synthetic mix of contigs (truth in each header), for the `predict` demo.
URLs (`https://`, `ftp://`) and NCBI accessions (`ncbi:`, `assembly:`) are recognised so that they
fail with a clear message until download support lands, instead of being taken for file names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

DOWNLOAD_PREFIXES = ("https://", "http://", "ftp://", "ncbi:", "assembly:")
METAGENOME_DEFAULTS = {"seed": 0, "contigs": 40, "min_length": 300, "max_length": 20000}


@dataclass(frozen=True)
class Source:
    kind: str  # "local", "simulated" or "metagenome"
    value: str  # the path, or the full simulated:... string

    @property
    def path(self) -> Path:
        return Path(self.value)


def parse_source(source: str, where: str = "") -> Source:
    """Classify a source string; `where` (e.g. "genomes.tsv, genome 'x'") prefixes errors."""
    source = str(source).strip()
    prefix = f"{where}: " if where else ""
    if not source:
        raise ValueError(f"{prefix}empty source; give a FASTA path or simulated:<profile>")
    if source.startswith(DOWNLOAD_PREFIXES):
        raise ValueError(
            f"{prefix}source {source!r} needs a download, which this version of dnalm does not do "
            "yet; download the FASTA yourself and give its path (plus its checksum)"
        )
    if source.startswith("simulated:metagenome"):
        metagenome_options(source)
        return Source("metagenome", source)
    if source.startswith("simulated:"):
        from dnalm.simulate import parse_simulated_source

        try:
            parse_simulated_source(source)
        except ValueError as err:
            raise ValueError(f"{prefix}{err}") from None
        return Source("simulated", source)
    return Source("local", source)


def metagenome_options(source: str) -> dict:
    """Options of a `simulated:metagenome?...` source, with defaults filled in."""
    _, _, query = source.partition("?")
    options = dict(METAGENOME_DEFAULTS, virus_fraction=0.3)
    for key, value in parse_qsl(query, strict_parsing=bool(query)):
        if key not in options:
            raise ValueError(
                f"{source!r}: unknown option {key!r}; allowed: {', '.join(sorted(options))}"
            )
        options[key] = float(value) if key == "virus_fraction" else int(value)
    return options
