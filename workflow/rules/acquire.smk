# acquire: every genome of the sheet -> bgzip FASTA + .fai/.gzi, checksum verified, and the BED of
# its runs of non-ACGT bases (found while normalising; windowing reads it instead of the genome).
# Download sources (URL, ncbi:, assembly:, refseq:, ucsc:) are fetched by the job itself, into
# the acquire.download_dir cache, never at parse time; GenomicBenchmarks datasets likewise.


rule acquire_genome:
    input:
        local_source,
    output:
        fasta="resources/genomes/{genome}.fa.gz",
        fai="resources/genomes/{genome}.fa.gz.fai",
        gzi="resources/genomes/{genome}.fa.gz.gzi",
        ambiguous="resources/genomes/{genome}.ambiguous.bed.gz",
        stats="resources/genomes/{genome}.stats.json",
    log:
        "logs/acquire_genome/{genome}.log",
    benchmark:
        BENCHMARKS["acquire_genome"]
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=acquire_runtime,
        ncbi=ncbi_slots,
    params:
        source=lambda wc: GENOMES.loc[wc.genome, "source"],
        checksum=lambda wc: GENOMES.loc[wc.genome, "checksum"],
        # passed to normalise_fasta as they are
        normalise={
            k: config["acquire"][k] for k in ("soft_mask", "iupac", "empty_records")
        },
        urls=source_urls,
    script:
        "../scripts/acquire_genome.py"


rule genomic_benchmark:
    input:
        benchmark_references,
    output:
        directory("resources/genomic_benchmarks/{dataset}"),
    log:
        "logs/genomic_benchmark/{dataset}.log",
    benchmark:
        BENCHMARKS["genomic_benchmark"]
    wildcard_constraints:
        dataset=r"[A-Za-z0-9_]+",
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        references=lambda wc: config["acquire"]["genomic_benchmarks_references"].get(
            wc.dataset
        ),
        coordinates=benchmark_coordinates,
        # a function, so that Snakemake leaves the template's {dataset}/{drive_id} alone
        url=lambda wc: config["acquire"]["genomic_benchmarks_url"],
    script:
        "../scripts/genomic_benchmark.py"


rule simulate_sample:
    output:
        "resources/samples/{sample}.fa.gz",
    log:
        "logs/simulate_sample/{sample}.log",
    benchmark:
        BENCHMARKS["simulate_sample"]
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        source=lambda wc: SAMPLES[wc.sample],
    script:
        "../scripts/simulate_sample.py"


# The files that labelled tasks name by URL (source url/urls with sha256), fetched by a job to
# resources/downloads/labelled/<sha256[:16]>/<file name>, or copied from acquire.mirror when it
# has them; labelled_windows reads them there (dnalm.labelled).
rule download_labelled:
    output:
        "resources/downloads/labelled/{digest}/{name}",
    log:
        "logs/download_labelled/{digest}/{name}.log",
    benchmark:
        BENCHMARKS["download_labelled"]
    wildcard_constraints:
        digest="[0-9a-f]{16}",
        name="[^/]+",
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=60,
    params:
        url=lambda wc, output: LABELLED_DOWNLOADS[output[0]][0],
        sha256=lambda wc, output: LABELLED_DOWNLOADS[output[0]][1],
    script:
        "../scripts/download_labelled.py"


# A model's init_from (a Hugging Face Hub id or a local directory): an official HyenaDNA
# checkpoint, fetched through the Hub's cache (HF_HOME; HF_HUB_OFFLINE, HF_ENDPOINT honoured),
# every file checked against the size and hash the Hub reports, the resolved commit recorded in
# source.json beside the files; a local directory is copied. The checkpoint must fit the model
# entry (size, max_seq_len, tokenizer) or nothing is written (dnalm.hub).
rule fetch_checkpoint:
    input:
        init_from_files,
    output:
        directory("resources/checkpoints/{model}"),
    log:
        "logs/fetch_checkpoint/{model}.log",
    benchmark:
        BENCHMARKS["fetch_checkpoint"]
    wildcard_constraints:
        model=one_of(PUBLISHED),
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        init_from=lambda wc: MODELS[wc.model]["init_from"],
        revision=lambda wc: MODELS[wc.model].get("revision"),
        entry=lambda wc: {
            k: v
            for k, v in model_spec(wc.model).items()
            if k in ("name", "arch", "size", "max_seq_len", "init_from")
        },
        tokenizer=lambda wc: TOKENIZERS[MODELS[wc.model]["tokenizer"]],
    script:
        "../scripts/fetch_checkpoint.py"


# A labelled task's Hub dataset (source format hf_dataset): its parquet files (those of the
# tasks' splits patterns, else all) and card, fetched and checked as checkpoints are; one
# directory per repository and revision, which every task naming it reads.
rule fetch_dataset:
    output:
        directory("resources/hub_datasets/{hub_dataset}"),
    log:
        "logs/fetch_dataset/{hub_dataset}.log",
    benchmark:
        BENCHMARKS["fetch_dataset"]
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        dataset=lambda wc, output: HUB_DATASETS[output[0]],
    script:
        "../scripts/fetch_dataset.py"
