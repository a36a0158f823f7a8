"""labelled_windows: a labelled-sequence task's train/val/test tables, sequences inline."""

from dnalm.files import write_parquet, write_tsv
from dnalm.labelled import cross_split_duplicates, labelled_windows, read_source
from dnalm.runtime import job_log
from dnalm.windows import SPLITS, class_counts

with job_log(snakemake.log[0]) as log:
    task, spec, split = snakemake.wildcards.task, snakemake.params.task, snakemake.params.split
    source = spec["source"]
    table = read_source(source)
    log.info(
        "%s: %d sequences from %s (%s)",
        task,
        len(table),
        ", ".join(map(str, snakemake.input)),
        source["format"],
    )
    log.info(
        "%s names no sheet genome, so the pretraining corpus excludes nothing for it; if these "
        "sequences come from a pretraining genome, mark that genome pretrain=false",
        task,
    )
    longest = int(table["sequence"].str.len().max())
    limit = spec.get("max_length")
    if limit is None and longest > snakemake.params.max_seq_len:
        row = table.loc[table["sequence"].str.len().idxmax()]
        raise ValueError(
            f"task {task!r}: sequence {row['id']!r} ({row['file']}, line {row['line']}) has "
            f"{longest} bases but the shortest model max_seq_len is {snakemake.params.max_seq_len}; "
            "set the task's max_length to keep the first bases, or raise max_seq_len"
        )
    if limit is not None and longest > limit:
        log.info(
            "sequences longer than max_length %d are cut to their first %d bases", limit, limit
        )
    splits = labelled_windows(
        table,
        task=task,
        labels=snakemake.params.labels,
        val_fraction=split["val_fraction"],
        test_fraction=split["test_fraction"],
        seed=split["seed"],
        test_groups=source.get("test_groups"),
        val_groups=source.get("val_groups"),
        balance=spec["balance"],
        max_sequences_per_split=spec.get("max_sequences_per_split"),
        max_length=limit,
    )
    for name in SPLITS:
        part = splits[name]
        if "group" in table:  # without a group column every sequence is its own unit
            groups = sorted(part["group"].unique())
            more = f" ... ({len(groups)} groups)" if len(groups) > 10 else ""
            log.info("%s: %d sequences; groups %s%s", name, len(part), ", ".join(groups[:10]), more)
        else:
            log.info("%s: %d sequences", name, len(part))
    for name, n in cross_split_duplicates(splits).items():
        if n:
            log.warning("%s: %d sequences are identical to a train sequence", name, n)
    counts = class_counts({s: splits[s] for s in SPLITS})
    for name in SPLITS:
        write_parquet(snakemake.output[name], splits[name])
    write_tsv(snakemake.output.counts, counts)
    log.info("class counts:\n%s", counts.to_string(index=False))
