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
