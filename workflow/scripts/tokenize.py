"""tokenize: token ids of every window of one corpus split, as a memory-mapped shard."""

from pathlib import Path

from dnalm.corpus import tokenize_windows
from dnalm.runtime import job_log
from dnalm.tokenization import load_encoder

with job_log(snakemake.log[0]) as log:
    encoder = load_encoder(Path(snakemake.input.tokenizer).parent)
    prefix = Path(snakemake.output.bin).with_suffix("")
    # The parquet path, not a DataFrame: the table is read in row batches, genomes by block.
    n = tokenize_windows(
        snakemake.input.windows,
        dict(snakemake.params.genomes),
        encoder,
        prefix,
        # the vocabulary's size and fingerprint are added by the writer
        meta={
            "tokenizer": str(Path(snakemake.input.tokenizer).parent),
            "pad_token_id": encoder.pad_id,
            "labels": snakemake.params.labels,
        },
    )
    log.info("%d windows tokenized to %s (.bin/.idx, dtype %s)", n, prefix, encoder.dtype)
