"""build_tokenizer: save the configured tokenizer as a transformers tokenizer directory."""

from pathlib import Path

from dnalm.runtime import job_log
from dnalm.tokenization import build_tokenizer

with job_log(snakemake.log[0]) as log:
    spec = dict(snakemake.params.spec)
    tokenizer = build_tokenizer(spec.pop("kind"), **spec)
    tokenizer.save_pretrained(Path(snakemake.output[0]).parent)
    log.info(
        "tokenizer with %d tokens saved to %s", len(tokenizer), Path(snakemake.output[0]).parent
    )
