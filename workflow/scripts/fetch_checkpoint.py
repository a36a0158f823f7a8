"""fetch_checkpoint: a model's init_from (Hub id or local directory) -> resources/checkpoints/,
checked against the Hub's hashes and against the model entry, with source.json."""

from dnalm.hub import fetch_checkpoint
from dnalm.hyenadna_config import check_entry
from dnalm.runtime import job_log

with job_log(snakemake.log[0]) as log:
    entry, tokenizer = dict(snakemake.params.entry), dict(snakemake.params.tokenizer)
    record = fetch_checkpoint(
        snakemake.params.init_from,
        snakemake.output[0],
        revision=snakemake.params.revision,
        check=lambda root: check_entry(root, entry, tokenizer),
        log=log,
    )
    where = record.get("repo_id") or record["path"]
    log.info(
        "%s (%s, commit %s) fits model %s",
        where,
        record["layout"],
        record.get("commit"),
        entry["name"],
    )
