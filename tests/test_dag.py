"""Every shipped config plans the jobs and wiring it should, `snakemake --rulegraph` and `--dag`
render through graphviz, and the committed docs/rulegraph.svg is the default config's live rule
graph."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter

import pytest
import yaml
from conftest import ROOT, dag_jobs, run_snakemake

SVG = "{http://www.w3.org/2000/svg}"
COMMITTED = ROOT / "docs" / "rulegraph.svg"
# The command for docs/rulegraph.svg (kept in step with docs/reruns.md's `## The DAG`).
COMMAND = "snakemake --rulegraph | dot -Tsvg > docs/rulegraph.svg"

CORE = {
    "acquire_genome",
    "split_groups",
    "task_windows",
    "pretrain_windows",
    "audit",
    "build_tokenizer",
    "tokenize",
    "pretrain",
    "finetune",
    "baseline",
    "aggregate",
    "provenance",
    "all",
}
PUBLISHED_ONLY = {"pretrain_windows", "pretrain", "split_groups", "task_windows"}
CONFIGS = {
    # simulated genomes and a simulated metagenome to predict on
    "config/config.yaml": CORE | {"simulate_sample", "predict"},
    # + GenomicBenchmarks datasets (downloaded or rebuilt) as labelled-sequence tasks
    "config/study.yaml": CORE | {"genomic_benchmark", "labelled_windows"},
    # + labelled tasks whose files are downloaded by URL (or taken from acquire.mirror)
    "config/real_cpu.yaml": CORE | {"download_labelled", "labelled_windows"},
    # the published HyenaDNA checkpoints vs scratch on GenomicBenchmarks: nothing is pretrained
    "config/hyenadna_gb.yaml": (CORE - PUBLISHED_ONLY)
    | {"fetch_checkpoint", "genomic_benchmark", "labelled_windows"},
}


def runs_per_init(config: dict, models: list[str] | None = None) -> Counter:
    """Fine-tuning runs per init of `models` (default all): every task, seed and model, a
    published run only for a model with init_from (finetune.inits, default pretrained and
    scratch)."""
    inits = config["finetune"].get("inits", ["pretrained", "scratch"])
    per_model = len(config["tasks"]) * len(config["finetune"]["seeds"])
    return Counter(
        init
        for name, spec in config["models"].items()
        if models is None or name in models
        for init in inits
        if init != "published" or "init_from" in spec
        for _ in range(per_model)
    )


def needs_dot() -> None:
    """Skip without graphviz, as on a user's machine; fail where CI installed it
    (DNALM_REQUIRE_GRAPHVIZ=1), so that the drawing tests never skip there unseen."""
    if shutil.which("dot") is None:
        why = "graphviz's `dot` is not installed (Debian/Ubuntu: apt-get install graphviz)"
        if os.environ.get("DNALM_REQUIRE_GRAPHVIZ") == "1":
            pytest.fail(f"{why}, but DNALM_REQUIRE_GRAPHVIZ=1 says it must be")
        pytest.skip(why)


def draw(dot_text: str) -> ET.Element:
    """The graph as graphviz draws it (`| dot -Tsvg`), parsed as XML."""
    needs_dot()
    svg = subprocess.run(
        ["dot", "-Tsvg"], input=dot_text, capture_output=True, text=True, timeout=300
    )
    assert svg.returncode == 0, svg.stderr[-3000:]
    return ET.fromstring(svg.stdout)  # raises on anything that is not well-formed XML


@functools.cache
def live_rulegraph() -> ET.Element:
    """The default config's `snakemake --rulegraph | dot -Tsvg`."""
    needs_dot()
    out = run_snakemake(ROOT, "--rulegraph", configfile=ROOT / "config/config.yaml", timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("digraph"), out.stdout[:500]
    return draw(out.stdout)


def nodes(svg: ET.Element) -> dict[str, str]:
    """Node id -> rule: a node's first text line is its rule (the rest are wildcards)."""
    found = {}
    for g in svg.iter(f"{SVG}g"):
        if g.get("class") == "node":
            found[g.findtext(f"{SVG}title")] = g.findtext(f"{SVG}text")
    return found


def rule_edges(svg: ET.Element) -> set[tuple[str, str]]:
    names = nodes(svg)
    edges = set()
    for g in svg.iter(f"{SVG}g"):
        if g.get("class") == "edge":
            source, target = g.findtext(f"{SVG}title").split("->")
            edges.add((names[source], names[target]))
    return edges


@pytest.mark.parametrize(
    "configfile",
    [
        "config/config.yaml",
        # hundreds of jobs: the slowest to lay out (5-10 s each here)
        pytest.param("config/study.yaml", marks=pytest.mark.slow),
        pytest.param("config/real_cpu.yaml", marks=pytest.mark.slow),
        pytest.param("config/hyenadna_gb.yaml", marks=pytest.mark.slow),
    ],
)
def test_dag_plans_and_renders(configfile, planned_dag):
    dot = planned_dag(configfile)
    jobs, edges = dag_jobs(dot)
    counts = Counter(jobs.values())
    assert set(counts) == CONFIGS[configfile]
    config = yaml.safe_load((ROOT / configfile).read_text())
    runs = runs_per_init(config)
    assert counts["finetune"] == runs.total()  # one per init the model has
    # only the pretrained runs wait for pretraining; every run of a model with a published
    # checkpoint waits for it (it is the architecture of all of them)
    after_pretraining = {b for a, b in edges if jobs[a] == "pretrain" and jobs[b] == "finetune"}
    assert len(after_pretraining) == runs["pretrained"]
    published = [m for m, spec in config["models"].items() if "init_from" in spec]
    after_fetch = {b for a, b in edges if jobs[a] == "fetch_checkpoint" and jobs[b] == "finetune"}
    assert len(after_fetch) == runs_per_init(config, published).total()
    assert counts["pretrain"] == (len(config["models"]) if runs["pretrained"] else 0)
    assert counts["fetch_checkpoint"] == len(published)
    assert counts["all"] == counts["aggregate"] == counts["provenance"] == 1
    wiring = {(jobs[a], jobs[b]) for a, b in edges}
    needed = [("tokenize", "finetune"), ("aggregate", "all")]
    needed += [("pretrain", "finetune")] if runs["pretrained"] else []
    for edge in needed:
        assert edge in wiring, edge
    assert not any(source == "all" for source, _ in wiring)
    if configfile == "config/config.yaml":  # every sheet genome is acquired once
        rows = (ROOT / config["genomes"]).read_text().splitlines()[1:]
        assert counts["acquire_genome"] == sum(bool(r.strip()) and r[0] != "#" for r in rows)
    assert Counter(nodes(draw(dot)).values()) == counts


def test_rulegraph_renders():
    rules = nodes(live_rulegraph())
    assert sorted(rules.values()) == sorted(CONFIGS["config/config.yaml"])  # one node per rule


def test_committed_rulegraph_is_current():
    """docs/rulegraph.svg shows today's rules and wiring; if this fails, run the command of
    docs/reruns.md again from the repository root."""
    committed = ET.parse(COMMITTED).getroot()
    live = live_rulegraph()
    hint = f"docs/rulegraph.svg is stale; regenerate it: {COMMAND}"
    assert sorted(nodes(committed).values()) == sorted(nodes(live).values()), hint
    assert rule_edges(committed) == rule_edges(live), hint
    page = (ROOT / "docs/reruns.md").read_text()
    assert COMMAND in page and "](rulegraph.svg)" in page


def test_study_config_plans_offline(planned_dag):
    """config/study.yaml plans the whole study without touching the network: downloads are jobs.
    (The plan is test_dag_plans_and_renders's, made once per session.)"""
    jobs, _ = dag_jobs(planned_dag("config/study.yaml"))
    counts = Counter(jobs.values())
    study = yaml.safe_load((ROOT / "config/study.yaml").read_text())
    runs = len(study["tasks"]) * len(study["models"]) * len(study["finetune"]["seeds"])
    assert counts["finetune"] == 2 * runs and runs >= 9 * 4 * 3  # pretrained and scratch
    assert counts["genomic_benchmark"] == 8 and counts["labelled_windows"] == 8
    # every genome the study needs is acquired by a job (10 for the virus task, mm10 as reference)
    assert counts["acquire_genome"] == 11
    # the default config is not merged into the study's: no micro models, no demo sample
    assert counts["pretrain"] == len(study["models"]) == 4
    assert "predict" not in counts and "simulate_sample" not in counts
