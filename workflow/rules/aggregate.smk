# aggregate: one tidy table of every run, the paired pretraining effect, figures for the report.
# provenance: per-rule run time and memory from every job's benchmark file, software versions
# and the config, for the report's last category.


# what aggregate and provenance write; the default target asks for all of it (all_outputs)
SUMMARY = {
    "answer_page": "results/summary/answer.html",
    "answer": "results/summary/answer.tsv",
    "metrics": "results/summary/metrics.tsv",
    "effect": "results/summary/pretrain_effect.tsv",
    "vs_baseline": "results/summary/vs_baseline.tsv",
    "size_figure": "results/summary/figures/metric_vs_size.png",
    "effect_figure": "results/summary/figures/pretrain_effect.png",
    "pretrain_figure": "results/summary/figures/pretrain_loss.png",
    "finetune_figure": "results/summary/figures/finetune_curves.png",
    "audit": "results/summary/audit.tsv",
    "roc_pr_figure": "results/summary/figures/roc_pr.png",
    # rule provenance
    "benchmarks": "results/summary/rule_benchmarks.tsv",
    "benchmarks_figure": "results/summary/figures/rule_benchmarks.png",
    "software": "results/summary/software.tsv",
    "config": "results/summary/config.yaml",
}


# Results items carry the same two labels, so the report lists them by kind: the answer first
rule aggregate:
    input:
        # fine-tuning runs; may also hold baseline runs (results/baselines/...)
        runs=all_runs(),
        # metrics.json of the baseline runs: results/baselines/{task}/{baseline}/seed{N}/
        baselines=all_baselines(),
        pretrain=expand("results/pretrain/{model}/curve.tsv", model=PRETRAINED),
        audits=expand("results/audit/{task}.tsv", task=TASKS),
    output:
        answer_page=report(
            SUMMARY["answer_page"],
            caption="../report/answer.rst",
            category="3. Results",
            labels={
                "kind": "answer",
                "shows": "at a glance: the verdict and the best of each kind, per task",
            },
        ),
        answer=report(
            SUMMARY["answer"],
            caption="../report/answer_table.rst",
            category="3. Results",
            labels={"kind": "answer", "shows": "the verdict's numbers, as a table"},
        ),
        metrics=report(
            SUMMARY["metrics"],
            caption="../report/metrics.rst",
            category="3. Results",
            labels={"kind": "table", "shows": "every run"},
        ),
        effect=report(
            SUMMARY["effect"],
            caption="../report/pretrain_effect.rst",
            category="3. Results",
            labels={
                "kind": "table",
                "shows": "pretraining effect, every pair of inits",
            },
        ),
        vs_baseline=report(
            SUMMARY["vs_baseline"],
            caption="../report/vs_baseline.rst",
            category="3. Results",
            labels={"kind": "table", "shows": "each model against the best baseline"},
        ),
        size_figure=report(
            SUMMARY["size_figure"],
            caption="../report/metric_vs_size.rst",
            category="3. Results",
            labels={"kind": "figure", "shows": "metric vs model size"},
        ),
        effect_figure=report(
            SUMMARY["effect_figure"],
            caption="../report/pretrain_effect_figure.rst",
            category="3. Results",
            labels={"kind": "figure", "shows": "paired differences of inits"},
        ),
        pretrain_figure=report(
            SUMMARY["pretrain_figure"],
            caption="../report/pretrain_loss.rst",
            category="2. Training",
            labels={"figure": "pretraining loss"},
        ),
        finetune_figure=report(
            SUMMARY["finetune_figure"],
            caption="../report/finetune_curves.rst",
            category="2. Training",
            labels={"figure": "fine-tuning curves"},
        ),
        audit=report(
            SUMMARY["audit"],
            caption="../report/audit_summary.rst",
            category="3. Results",
            labels={"kind": "table", "shows": "near-duplicate audit, every task"},
        ),
        roc_pr_figure=report(
            SUMMARY["roc_pr_figure"],
            caption="../report/roc_pr.rst",
            category="3. Results",
            labels={"kind": "figure", "shows": "ROC and PR curves, best model"},
        ),
    log:
        "logs/aggregate/aggregate.log",
    benchmark:
        BENCHMARKS["aggregate"]
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        statistics=config["statistics"],
    script:
        "../scripts/aggregate.py"


rule provenance:
    input:
        all_benchmarks(),
    output:
        benchmarks=report(
            SUMMARY["benchmarks"],
            caption="../report/rule_benchmarks.rst",
            category="4. Provenance",
            labels={"table": "run time and memory per rule"},
        ),
        benchmarks_figure=report(
            SUMMARY["benchmarks_figure"],
            caption="../report/rule_benchmarks_figure.rst",
            category="4. Provenance",
            labels={"figure": "run time and memory per rule"},
        ),
        software=report(
            SUMMARY["software"],
            caption="../report/software.rst",
            category="4. Provenance",
            labels={"table": "software versions"},
        ),
        config=report(
            SUMMARY["config"],
            caption="../report/config.rst",
            category="4. Provenance",
            labels={"table": "config"},
        ),
    log:
        "logs/provenance/provenance.log",
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        # the whole config: any change to it reruns this job, so config.yaml is the one used
        config=config,
    script:
        "../scripts/provenance.py"
