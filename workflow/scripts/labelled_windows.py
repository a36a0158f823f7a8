"""labelled_windows: a labelled-sequence task's train/val/test tables, sequences inline.

With `split_by: similarity` the split draws similarity clusters (the audit's measure, read from
the `audit` config) instead of the source's groups or single sequences.
"""

import time

import pandas as pd

from dnalm.audit import AuditSettings
from dnalm.files import write_parquet, write_tsv
from dnalm.labelled import cross_split_duplicates, labelled_windows, read_source, similarity_groups
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
    split_by = spec.get("split_by", "group")
    if split_by == "similarity":
        measure = AuditSettings(**snakemake.params.audit)
        started = time.perf_counter()
        try:
            table, clusters = similarity_groups(
                table,
                k=measure.k,
                min_shared=measure.min_shared,
                max_kmer_windows=measure.max_kmer_windows,
                max_length=limit,
                test_groups=source.get("test_groups"),
                val_groups=source.get("val_groups"),
            )
        except ValueError as err:
            raise ValueError(f"task {task!r}: {err}") from None
        sizes = clusters.sizes
        log.info(
            "split by similarity (%d-mers, linked at %.0f%% shared, repeats = k-mers in more "
            "than %d sequences): %d clusters of %d sequences in %.1f s; the largest holds %d "
            "sequences (%.2f%%); %d of %d candidate pairs linked; %d repeat k-mers",
            measure.k,
            100 * measure.min_shared,
            measure.max_kmer_windows,
            clusters.count,
            len(table),
            time.perf_counter() - started,
            sizes.max(),
            100 * clusters.largest_share,
            clusters.links,
            clusters.pairs,
            clusters.repeats,
        )
        shared = pd.Series(sizes[clusters.cluster] > 1, index=table.index)
        for label, part in shared.groupby(table["label"], sort=True):
            log.info(
                "label %s: %d of %d sequences share a cluster with another sequence",
                label,
                int(part.sum()),
                len(part),
            )
        bound = int(clusters.repeat_bound.sum())
        if bound:
            log.warning(
                "%d sequences have at least %.0f%% repeat k-mers: the audit counts those as "
                "shared, so it may call them near-duplicates whichever side they are on",
                bound,
                100 * measure.min_shared,
            )
        smallest = min(split["val_fraction"], split["test_fraction"])
        if clusters.largest_share > smallest / 2:
            log.warning(
                "the largest cluster holds %.1f%% of the sequences, more than half the smallest "
                "split fraction (%.0f%%): the split sizes may miss their targets",
                100 * clusters.largest_share,
                100 * smallest,
            )
    splits = labelled_windows(
        table,
        task=task,
        labels=snakemake.params.labels,
        val_fraction=split["val_fraction"],
        test_fraction=split["test_fraction"],
        seed=split["seed"],
        test_groups=source.get("test_groups"),  # a similarity split has failed on them above
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
