# aggregate: one tidy table of every run, the paired pretraining effect, figures for the report.
# provenance: per-rule run time and memory from every job's benchmark file, software versions
# and the config, for the report's last category.


# what aggregate and provenance write; the default target asks for all of it (all_outputs)
SUMMARY = {
    "metrics": "results/summary/metrics.tsv",
    "effect": "results/summary/pretrain_effect.tsv",
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


rule aggregate:
    input:
        runs=all_runs(),
        baselines=all_baselines(),
        pretrain=expand("results/pretrain/{model}/curve.tsv", model=PRETRAINED),
        audits=expand("results/audit/{task}.tsv", task=TASKS),
    output:
        metrics=report(
            SUMMARY["metrics"],
            caption="../report/metrics.rst",
            category="3. Results",
            labels={"table": "every run"},
        ),
        effect=report(
            SUMMARY["effect"],
            caption="../report/pretrain_effect.rst",
            category="3. Results",
            labels={"table": "pretraining effect"},
        ),
        size_figure=report(
            SUMMARY["size_figure"],
            caption="../report/metric_vs_size.rst",
            category="3. Results",
            labels={"figure": "metric vs model size"},
        ),
        effect_figure=report(
            SUMMARY["effect_figure"],
            caption="../report/pretrain_effect_figure.rst",
            category="3. Results",
            labels={"figure": "pretrained minus scratch"},
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
            labels={"table": "near-duplicate audit, every task"},
        ),
        roc_pr_figure=report(
            SUMMARY["roc_pr_figure"],
            caption="../report/roc_pr.rst",
            category="3. Results",
            labels={"figure": "ROC and PR curves, best model"},
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
