"""acquire_genome: normalise one genome of the sheet to bgzip FASTA + .fai/.gzi."""

import json
import tempfile
from pathlib import Path

from dnalm.fasta import normalise_fasta, verify_checksum
from dnalm.runtime import job_log
from dnalm.simulate import parse_simulated_source, simulate_genome, write_fasta
from dnalm.sources import parse_source

with job_log(snakemake.log[0]) as log:
    source = parse_source(snakemake.params.source, f"genome {snakemake.wildcards.genome!r}")
    out = Path(snakemake.output.fasta)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        if source.kind == "simulated":
            raw = Path(tmp) / "simulated.fa"
            write_fasta(simulate_genome(parse_simulated_source(source.value)), raw)
            log.info("simulated %s -> %s", source.value, raw)
        else:
            raw = source.path
            if snakemake.params.checksum:
                verify_checksum(raw, snakemake.params.checksum)
                log.info("checksum verified: %s", snakemake.params.checksum)
        stats = normalise_fasta(raw, out, soft_mask=snakemake.params.soft_mask)
    Path(snakemake.output.stats).write_text(json.dumps(stats.to_dict(), indent=2) + "\n")
    log.info(
        "%s: %d records, %d bases, GC %.3f, N %.4f",
        out,
        stats.records,
        stats.bases,
        stats.gc_fraction,
        stats.n_fraction,
    )
