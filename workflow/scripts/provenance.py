"""provenance: per-rule run time and memory from the benchmark files, software versions, the config."""

from pathlib import Path

import yaml

from dnalm.files import write_text
from dnalm.runtime import job_log
from dnalm.summary import collect_benchmarks, plot_benchmarks, software_versions, write_table

with job_log(snakemake.log[0]) as log:
    out = snakemake.output
    Path(out.benchmarks_figure).parent.mkdir(parents=True, exist_ok=True)
    table = collect_benchmarks(snakemake.input)
    write_table(table, out.benchmarks)
    plot_benchmarks(table, out.benchmarks_figure)
    software = software_versions()
    write_table(software, out.software)
    write_text(out.config, yaml.safe_dump(dict(snakemake.params.config), sort_keys=False))
    log.info(
        "%d benchmark files, %d rules:\n%s\nsoftware:\n%s",
        len(snakemake.input),
        len(table),
        table.to_string(index=False),
        software.to_string(index=False),
    )
