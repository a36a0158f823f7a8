"""predict: per-record and per-window class probabilities (TSV and BED) for one FASTA.

With `resources.gpu` > 0 the job first claims its own device(s) of this machine (dnalm.gpus),
before CUDA starts in this process.
"""

from dnalm.gpus import claim_gpus
from dnalm.runtime import job_log, limit_threads, pick_device

limit_threads(snakemake.threads)

from dnalm.model_dir import load_classifier, training_window  # noqa: E402
from dnalm.predict import predict_fasta  # noqa: E402

gpus = 0 if snakemake.params.device == "cpu" else int(snakemake.resources.gpu)
with (
    job_log(snakemake.log[0]) as log,
    claim_gpus(gpus, setting="resources.predict.gpu", label=snakemake.log[0], log=log) as claim,
):
    if claim.note:
        log.info("%s", claim.note)
    device = pick_device(snakemake.params.device)
    model, tokenizer = load_classifier(snakemake.input.model, device)
    window = training_window(snakemake.input.model)
    if not window:
        raise ValueError(f"{snakemake.input.model} does not record its training window length")
    n = predict_fasta(
        model,
        tokenizer,
        snakemake.input.fasta,
        snakemake.output.records,
        window=window,
        stride=snakemake.params.stride or window,
        batch_size=snakemake.params.batch_size,
        device=device,
        out_windows=snakemake.output.windows,
        out_bed=snakemake.output.bed,
        progress=False,  # a tqdm bar is noise in a log file: progress goes to the log instead
        log=log,
    )
    log.info("%d records of %s classified with %s", n, snakemake.input.fasta, snakemake.input.model)
