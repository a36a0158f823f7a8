# tokenize: one tokenizer per config entry; token ids of every window as memory-mapped shards.


rule build_tokenizer:
    output:
        "results/tokenizers/{tokenizer}/tokenizer.json",
        "results/tokenizers/{tokenizer}/tokenizer_config.json",
    log:
        "logs/build_tokenizer/{tokenizer}.log",
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        spec=lambda wc: TOKENIZERS[wc.tokenizer],
    script:
        "../scripts/build_tokenizer.py"


rule tokenize:
    input:
        windows="results/windows/{corpus}/{split}.parquet",
        tokenizer="results/tokenizers/{tokenizer}/tokenizer.json",
        genomes=lambda wc: [genome_fasta(g) for g in corpus_genomes(wc.corpus)],
    output:
        bin="results/tokens/{tokenizer}/{corpus}/{split}.bin",
        idx="results/tokens/{tokenizer}/{corpus}/{split}.idx",
        meta="results/tokens/{tokenizer}/{corpus}/{split}.meta.json",
    log:
        "logs/tokenize/{tokenizer}/{corpus}/{split}.log",
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        labels=lambda wc: task_labels(wc.corpus) if wc.corpus in TASKS else [],
    script:
        "../scripts/tokenize.py"
