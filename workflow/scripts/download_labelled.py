"""download_labelled: one file a labelled task names by URL, from acquire.mirror or the URL,
checked against its sha256."""

from dnalm.runtime import job_log
from dnalm.sources import AcquireSettings, fetch_file

with job_log(snakemake.log[0]) as log:
    settings = AcquireSettings.from_config(snakemake.config.get("acquire"))
    path = fetch_file(
        snakemake.params.url, snakemake.output[0], snakemake.params.sha256, settings, log=log
    )
    log.info("%s: sha256 %s verified", path, snakemake.params.sha256)
