"""acquire_genome: fetch (when a download) and normalise one genome to bgzip FASTA + .fai/.gzi."""

import json
import tempfile
from pathlib import Path

from dnalm.fasta import normalise_fasta, verify_checksum
from dnalm.runtime import job_log
from dnalm.simulate import parse_simulated_source, simulate_genome, write_fasta
from dnalm.sources import AcquireSettings, fetch_source, parse_source

with job_log(snakemake.log[0]) as log:
    source = parse_source(snakemake.params.source, f"genome {snakemake.wildcards.genome!r}")
    checksum = snakemake.params.checksum or None
    out = Path(snakemake.output.fasta)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".acquire-") as tmp:
        if source.kind == "simulated":
            raw = Path(tmp) / "simulated.fa"
            write_fasta(simulate_genome(parse_simulated_source(source.value)), raw)
            log.info("simulated %s -> %s", source.value, raw)
        elif source.is_download:
            settings = AcquireSettings.from_config(snakemake.config.get("acquire"))
            raw = fetch_source(source, tmp, settings, checksum=checksum, log=log)
            if checksum:
                log.info("checksum verified: %s", checksum)
        else:
            raw = source.path
            if checksum:
                verify_checksum(raw, checksum)
                log.info("checksum verified: %s", checksum)
        stats = normalise_fasta(raw, out, **snakemake.params.normalise)
    Path(snakemake.output.stats).write_text(json.dumps(stats.to_dict(), indent=2) + "\n")
    log.info(
        "%s: %d records, %d bases, GC %.3f, N %.4f",
        out,
        stats.records,
        stats.bases,
        stats.gc_fraction,
        stats.n_fraction,
    )
