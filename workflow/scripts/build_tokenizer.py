"""build_tokenizer: save the configured tokenizer as a transformers tokenizer directory.

char and kmer need no data; bpe is trained on the pretraining corpus' train windows.
"""

from pathlib import Path

from dnalm.runtime import job_log
from dnalm.tokenization import check_tokenizer_spec, limit_tokenizer_threads

limit_tokenizer_threads(snakemake.threads)

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from dnalm.corpus import window_sequences
    from dnalm.tokenization import build_tokenizer, sample_windows, save_tokenizer

    spec = check_tokenizer_spec(
        snakemake.params.spec, f"tokenizer {snakemake.wildcards.tokenizer!r}"
    )
    sequences = None
    if spec["kind"] == "bpe":
        windows = pd.read_parquet(snakemake.input.windows)
        sample = sample_windows(windows, spec["max_training_bases"])
        log.info(
            "training bpe (vocab_size %d) on %d of %d train windows (%d bases)",
            spec["vocab_size"],
            len(sample),
            len(windows),
            int((sample["end"] - sample["start"]).sum()),
        )
        sequences = window_sequences(sample, dict(snakemake.params.genomes))
    tokenizer = build_tokenizer(sequences=sequences, **spec)
    out = save_tokenizer(tokenizer, Path(snakemake.output[0]).parent)
    log.info("%s tokenizer with %d tokens saved to %s", spec["kind"], len(tokenizer), out)
