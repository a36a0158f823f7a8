"""fetch_dataset: a Hub dataset's parquet files -> resources/hub_datasets/, checked against the
Hub's hashes, with source.json (the commit fetched)."""

from dnalm.hub import fetch_dataset
from dnalm.runtime import job_log

with job_log(snakemake.log[0]) as log:
    dataset = snakemake.params.dataset
    record = fetch_dataset(
        dataset["repo"],
        snakemake.output[0],
        revision=dataset["revision"],
        patterns=dataset["patterns"],
        log=log,
    )
    log.info("%s: %d files at commit %s", dataset["repo"], len(record["files"]), record["commit"])
