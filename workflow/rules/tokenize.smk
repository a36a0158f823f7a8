# tokenize: one tokenizer per config entry; token ids of every window as memory-mapped shards.


rule build_tokenizer:
    input:
        unpack(tokenizer_training_data),
    output:
        "results/tokenizers/{tokenizer}/tokenizer.json",
        "results/tokenizers/{tokenizer}/tokenizer_config.json",
    log:
        "logs/build_tokenizer/{tokenizer}.log",
    benchmark:
        BENCHMARKS["build_tokenizer"]
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc: 4000 if TOKENIZERS[wc.tokenizer]["kind"] == "bpe" else 1000,
        runtime=lambda wc: 60 if TOKENIZERS[wc.tokenizer]["kind"] == "bpe" else 10,
    params:
        spec=lambda wc: TOKENIZERS[wc.tokenizer],
        genomes=tokenizer_training_genomes,
    script:
        "../scripts/build_tokenizer.py"


rule tokenize:
    input:
        windows="results/windows/{corpus}/{split}.parquet",
        tokenizer="results/tokenizers/{tokenizer}/tokenizer.json",
        genomes=lambda wc: list(corpus_fastas(wc).values()),
    output:
        bin="results/tokens/{tokenizer}/{corpus}/{split}.bin",
        idx="results/tokens/{tokenizer}/{corpus}/{split}.idx",
        meta="results/tokens/{tokenizer}/{corpus}/{split}.meta.json",
    log:
        "logs/tokenize/{tokenizer}/{corpus}/{split}.log",
    benchmark:
        BENCHMARKS["tokenize"]
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    # Streams by block: ~330 MB of imports + ~60 MB, whatever the genome (docs/performance.md).
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        labels=lambda wc: task_labels(wc.corpus) if wc.corpus in TASKS else [],
        genomes=corpus_fastas,
    script:
        "../scripts/tokenize.py"
