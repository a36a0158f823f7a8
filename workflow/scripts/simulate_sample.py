"""simulate_sample: a synthetic metagenome (contigs of both classes, truth in headers)."""

from dnalm.runtime import job_log
from dnalm.simulate import simulate_metagenome, write_fasta
from dnalm.sources import metagenome_options

with job_log(snakemake.log[0]) as log:
    opts = metagenome_options(snakemake.params.source)
    contigs = simulate_metagenome(
        seed=opts["seed"],
        n_contigs=opts["contigs"],
        min_length=opts["min_length"],
        max_length=opts["max_length"],
        virus_fraction=opts["virus_fraction"],
    )
    write_fasta(contigs, snakemake.output[0])
    log.info("wrote %d contigs to %s", len(contigs), snakemake.output[0])
