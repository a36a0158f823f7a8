# finetune: one classifier per task, model, init and seed. Every init (the published
# checkpoint, dnalm's pretraining, random weights: INITS) gets the same architecture, head,
# data, optimiser, schedule and step budget; model selection on val, one score on test. A model
# with init_from has its checkpoint's architecture for every init. With resources.gpu > 1 a job
# runs under torchrun, one DDP rank per GPU, the batch size being the global batch
# (src/dnalm/jobs.py).


rule finetune:
    input:
        unpack(finetune_tokens),
        test_windows="results/windows/{task}/test.parquet",
        audit=audit_gate,
        pretrained=pretrained_weights,
        published=published_checkpoint,
        tokenizer=model_tokenizer,
    output:
        metrics="results/finetune/{task}/{model}/{init}/seed{seed}/metrics.json",
        predictions="results/finetune/{task}/{model}/{init}/seed{seed}/predictions.tsv",
        curve="results/finetune/{task}/{model}/{init}/seed{seed}/curve.tsv",
        model=directory("results/finetune/{task}/{model}/{init}/seed{seed}/model"),
    log:
        "logs/finetune/{task}/{model}/{init}/seed{seed}.log",
    benchmark:
        BENCHMARKS["finetune"]
    conda:
        "../../envs/dnalm.yaml"
    threads: model_resources("finetune", "threads")
    resources:
        mem_mb=model_resources("finetune", "mem_mb"),
        runtime=model_resources("finetune", "runtime"),
        gpu=model_resources("finetune", "gpu"),
    params:
        model=lambda wc: model_spec(wc.model),
        # the settings that define one run: the seed and init lists are not among them
        train={
            k: v for k, v in config["finetune"].items() if k not in ("seeds", "inits")
        },
        # where the task's sequences come from, for the model card
        data=lambda wc: {
            k: TASKS[wc.task][k] for k in ("source", "genomes") if k in TASKS[wc.task]
        },
        device=config["device"],
        checkpoint=checkpoint_dir,
    script:
        "../scripts/train_classifier.py"


# baseline: the simple models every language model is shown beside (k-mer logistic regression,
# the GenomicBenchmarks CNN), per task, baseline and seed: the same windows, selection on val
# and one test score, the same metrics.json and predictions.tsv; CPU only.
rule baseline:
    input:
        **{s: f"results/windows/{{task}}/{s}.parquet" for s in SPLITS},
        genomes=task_genome_files,
        audit=audit_gate,
    output:
        metrics="results/baselines/{task}/{baseline}/seed{seed}/metrics.json",
        predictions="results/baselines/{task}/{baseline}/seed{seed}/predictions.tsv",
    log:
        "logs/baseline/{task}/{baseline}/seed{seed}.log",
    benchmark:
        BENCHMARKS["baseline"]
    conda:
        "../../envs/dnalm.yaml"
    threads: resources_of("baseline", "threads")
    resources:
        mem_mb=resources_of("baseline", "mem_mb"),
        runtime=resources_of("baseline", "runtime"),
    params:
        settings=lambda wc: config["baselines"][wc.baseline],
        genomes=task_fastas,
        labels=lambda wc: task_labels(wc.task),
        select_on=config["finetune"]["select_on"],
    script:
        "../scripts/baseline.py"
