# download: the files that labelled tasks name by URL (source url/urls with sha256), fetched by a
# job, never while planning, to resources/downloads/labelled/<sha256[:16]>/<file name>, or copied
# from acquire.mirror when it has them. labelled_windows reads them there (dnalm.labelled).

from dnalm.labelled import labelled_downloads

LABELLED_DOWNLOADS = labelled_downloads(config["tasks"])


rule download_labelled:
    output:
        "resources/downloads/labelled/{digest}/{name}",
    log:
        "logs/download_labelled/{digest}/{name}.log",
    benchmark:
        "results/benchmarks/download_labelled/{digest}/{name}.tsv"
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
