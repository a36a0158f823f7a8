"""tokenize: token ids of every window of one corpus split, as a memory-mapped shard."""

from pathlib import Path

import pandas as pd

from dnalm.corpus import tokenize_windows
from dnalm.runtime import job_log
from dnalm.shards import write_meta
from dnalm.tokenization import encoder_for, load_tokenizer

with job_log(snakemake.log[0]) as log:
    tokenizer = load_tokenizer(Path(snakemake.input.tokenizer).parent)
    windows = pd.read_parquet(snakemake.input.windows)
    paths = {Path(p).name.removesuffix(".fa.gz"): p for p in snakemake.input.genomes}
    encoder = encoder_for(tokenizer)
    dtype = encoder.dtype
    prefix = Path(snakemake.output.bin).with_suffix("")
    n = tokenize_windows(windows, paths, encoder, prefix)
    write_meta(
        prefix,
        {
            "tokenizer": str(Path(snakemake.input.tokenizer).parent),
            "vocab_size": len(tokenizer),
            "pad_token_id": tokenizer.pad_token_id,
            "dtype": dtype.name,
            "sequences": n,
            "tokens": int((windows["end"] - windows["start"]).sum()),
            "window_length": int((windows["end"] - windows["start"]).max()) if n else 0,
            "labels": snakemake.params.labels,
        },
    )
    log.info("%d windows tokenized to %s (.bin/.idx, dtype %s)", n, prefix, dtype)
