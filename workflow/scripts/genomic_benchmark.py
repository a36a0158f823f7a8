"""genomic_benchmark: one GenomicBenchmarks dataset in its layout, rebuilt or downloaded."""

from pathlib import Path

from dnalm.genomic_benchmarks import download_dataset, rebuild_dataset
from dnalm.runtime import job_log
from dnalm.sources import AcquireSettings

with job_log(snakemake.log[0]) as log:
    out = Path(snakemake.output[0])
    dataset = snakemake.wildcards.dataset
    coordinates = snakemake.params.coordinates or None
    if snakemake.params.references:
        rebuild_dataset(coordinates, snakemake.params.references, out.parent, log=log)
    else:
        settings = AcquireSettings.from_config(snakemake.config["acquire"])
        download_dataset(
            dataset,
            out.parent,
            cache_dir=Path(settings.download_dir) / "genomic_benchmarks",
            url_template=snakemake.params.url,
            coordinates_dir=coordinates,
            log=log,
            **settings.transfer(),
        )
    log.info("%s ready in %s", dataset, out)
