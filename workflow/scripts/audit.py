"""audit: share of test windows that nearly copy one training window; fails past max_fraction."""

import pandas as pd

from dnalm.audit import AuditSettings, audit_task, check_audit
from dnalm.runtime import job_log

with job_log(snakemake.log[0]) as log:
    settings = AuditSettings(**snakemake.params.audit)
    paths = dict(snakemake.params.genomes)
    train = pd.read_parquet(snakemake.input.train)
    test = pd.read_parquet(snakemake.input.test)
    log.info("%d train and %d test windows, %s", len(train), len(test), settings)
    summary, per_window = audit_task(train, test, paths, settings, snakemake.wildcards.task)
    log.info("summary:\n%s", summary.to_string(index=False))
    worst = per_window.sort_values("max_shared", ascending=False).head(10)
    log.info("test windows sharing most k-mers with one training window:\n%s", worst.to_string())
    check_audit(summary, settings)  # before writing: a failed audit leaves no output
    per_window.to_csv(snakemake.output.windows, sep="\t", index=False)
    summary.to_csv(snakemake.output.summary, sep="\t", index=False)
