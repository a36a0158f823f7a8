"""acquire_genome: fetch (when a download) and normalise one genome to bgzip FASTA + .fai/.gzi,
with the BED of its runs of non-ACGT bases, which the windows steps read instead of the genome."""

import gzip
import json
import tempfile
from pathlib import Path

from dnalm.bgzf import DEFAULT_COMPRESSOR, compression_level
from dnalm.fasta import ambiguous_bed_path, normalise_fasta, verify_checksum
from dnalm.runtime import job_log
from dnalm.simulate import parse_simulated_source, simulate_genome, write_fasta
from dnalm.sources import AcquireSettings, fetch_source, parse_source

with job_log(snakemake.log[0]) as log:
    source = parse_source(snakemake.params.source, f"genome {snakemake.wildcards.genome!r}")
    checksum = snakemake.params.checksum or None
    out = Path(snakemake.output.fasta)
    if ambiguous_bed_path(out) != Path(snakemake.output.ambiguous):
        raise ValueError(
            f"output ambiguous={snakemake.output.ambiguous!r}: normalise_fasta writes the runs "
            f"of {out} to {ambiguous_bed_path(out)}; name the rule's output so"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".acquire-") as tmp:
        if source.kind == "simulated":
            raw = Path(tmp) / "simulated.fa"
            write_fasta(simulate_genome(parse_simulated_source(source.value)), raw)
            log.info("simulated %s -> %s", source.value, raw)
        elif source.is_download:
            settings = AcquireSettings.from_config(snakemake.config["acquire"])
            raw = fetch_source(source, tmp, settings, checksum=checksum, log=log)
            if checksum:
                log.info("checksum verified: %s", checksum)
        else:
            raw = source.path
            if checksum:
                verify_checksum(raw, checksum)
                log.info("checksum verified: %s", checksum)
        acquire = snakemake.config.get("acquire", {})
        compressor = acquire.get("compression", DEFAULT_COMPRESSOR)
        level = compression_level(compressor, acquire.get("compress_level"))
        log.info(
            "normalising %s: %d thread(s), %s level %d", raw, snakemake.threads, compressor, level
        )
        stats = normalise_fasta(
            raw,
            out,
            ambiguous_bed=True,
            threads=snakemake.threads,
            compressor=compressor,
            compress_level=level,
            **snakemake.params.normalise,
        )
    Path(snakemake.output.stats).write_text(json.dumps(stats.to_dict(), indent=2) + "\n")
    log.info(
        "%s: %d records, %d bases, GC %.3f, N %.4f",
        out,
        stats.records,
        stats.bases,
        stats.gc_fraction,
        stats.n_fraction,
    )
    with gzip.open(snakemake.output.ambiguous, "rt") as fh:
        runs = sum(1 for line in fh if not line.startswith("#"))
    log.info("%s: %d runs of non-ACGT bases", snakemake.output.ambiguous, runs)
