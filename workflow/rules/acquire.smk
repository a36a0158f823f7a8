# acquire: every genome of the sheet -> bgzip FASTA + .fai/.gzi, checksum verified.


rule acquire_genome:
    input:
        local_source,
    output:
        fasta="resources/genomes/{genome}.fa.gz",
        fai="resources/genomes/{genome}.fa.gz.fai",
        gzi="resources/genomes/{genome}.fa.gz.gzi",
        stats="resources/genomes/{genome}.stats.json",
    log:
        "logs/acquire_genome/{genome}.log",
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        source=lambda wc: GENOMES.loc[wc.genome, "source"],
        checksum=lambda wc: GENOMES.loc[wc.genome, "checksum"],
        soft_mask=config["acquire"]["soft_mask"],
    script:
        "../scripts/acquire_genome.py"


rule simulate_sample:
    output:
        "resources/samples/{sample}.fa.gz",
    log:
        "logs/simulate_sample/{sample}.log",
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
