"""The documentation agrees with what it documents.

- envs/dnalm.yaml pins what pyproject.toml pins;
- .snakemake-workflow-catalog.yml has the keys the Snakemake workflow catalog reads;
- config/README.md's key tables are the ones tools/config_keys.py makes from the schemas today;
- README.md stays short, its quick-start test command is the one .ci/run runs, and its own-data
  example plans with a real `snakemake -n`;
- nothing in README.md, docs/, config/, src/ or workflow/ points outside the repository.

Each check is a function that returns what is wrong; beside each test, a second one plants a
mistake and checks that it is found, so that no check passes whatever the files say.
"""

from __future__ import annotations

import gzip
import importlib.util
import re
import shlex
import tomllib
from pathlib import Path

import yaml
from conftest import ROOT, run_snakemake
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

README_MAX_LINES = 250
# Snakemake runs the workflow and is never a job's dependency: envs/dnalm.yaml leaves it out
# (docs/installation.md says why).
NOT_IN_CONDA_ENV = {"snakemake"}


# ---- (a) envs/dnalm.yaml pins what pyproject.toml pins ---------------------------------------


def pins(requirements: list[str]) -> dict[str, SpecifierSet]:
    """{normalised package name: version specifiers} of requirement strings."""
    out = {}
    for line in requirements:
        req = Requirement(line)
        out[canonicalize_name(req.name)] = req.specifier
    return out


def pin_mismatches(pyproject: dict, env: dict) -> list[str]:
    """How the conda environment's pip pins differ from pyproject's dependencies."""
    wanted = pins(pyproject["project"]["dependencies"])
    for name in NOT_IN_CONDA_ENV:
        wanted.pop(name, None)
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    have = pins([line for block in pip_lists for line in block])
    problems = [f"{name}: in pyproject.toml only" for name in sorted(wanted.keys() - have.keys())]
    problems += [f"{name}: in envs/dnalm.yaml only" for name in sorted(have.keys() - wanted.keys())]
    problems += [
        f"{name}: pyproject.toml {wanted[name]!s} but envs/dnalm.yaml {have[name]!s}"
        for name in sorted(wanted.keys() & have.keys())
        if wanted[name] != have[name]
    ]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    python = [d.split("=", 1)[1] for d in conda if d.startswith("python=")]
    requires = SpecifierSet(pyproject["project"]["requires-python"])
    if len(python) != 1 or not requires.contains(python[0]):
        problems.append(f"python: envs/dnalm.yaml {python} does not satisfy {requires}")
    for name in NOT_IN_CONDA_ENV:
        if name in have or any(re.match(rf"{name}\b", d) for d in conda):
            problems.append(f"{name}: must not be in envs/dnalm.yaml")
    return problems


def load_pins() -> tuple[dict, dict]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    env = yaml.safe_load((ROOT / "envs/dnalm.yaml").read_text())
    return pyproject, env


def test_conda_env_pins_are_pyprojects():
    assert pin_mismatches(*load_pins()) == []


def test_pin_check_finds_a_changed_pin():
    pyproject, env = load_pins()
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    torch = next(i for i, line in enumerate(pip) if line.startswith("torch"))
    pip[torch] = "torch==2.12.0"
    pip.append("requests>=2")
    problems = pin_mismatches(pyproject, env)
    assert any(p.startswith("torch: pyproject.toml ==2.13.0") for p in problems), problems
    assert "requests: in envs/dnalm.yaml only" in problems


# ---- (b) the workflow catalog's settings ----------------------------------------------------


def catalog_problems(catalog: dict) -> list[str]:
    """The keys the Snakemake workflow catalog reads from .snakemake-workflow-catalog.yml."""
    usage = (catalog or {}).get("usage") or {}
    problems = []
    flags = usage.get("mandatory-flags") or {}
    if not isinstance(flags.get("desc"), str) or not flags["desc"].strip():
        problems.append("usage.mandatory-flags.desc: a non-empty text")
    if not isinstance(flags.get("flags"), str) or not flags["flags"].strip():
        problems.append("usage.mandatory-flags.flags: the flags, as one string")
    stack = usage.get("software-stack-deployment")
    kinds = {"conda", "apptainer", "apptainer+conda"}
    if not isinstance(stack, dict) or set(stack) != kinds:
        problems.append(f"usage.software-stack-deployment: the keys {sorted(kinds)}")
    elif not all(isinstance(v, bool) for v in stack.values()):
        problems.append("usage.software-stack-deployment: true or false for each")
    if not isinstance(usage.get("report"), bool):
        problems.append("usage.report: true or false")
    return problems


def load_catalog() -> dict:
    return yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text())


def test_workflow_catalog_settings():
    catalog = load_catalog()
    assert catalog_problems(catalog) == []
    # what the catalog shows beside them: the config folder's README and the default config
    assert (ROOT / "config/README.md").is_file() and (ROOT / "config/config.yaml").is_file()
    # the flags are ones snakemake knows, and the report it promises has captions
    assert shlex.split(catalog["usage"]["mandatory-flags"]["flags"])[0] == "--cores"
    if catalog["usage"]["report"]:
        assert list((ROOT / "workflow/report").glob("*.rst"))


def test_catalog_check_finds_missing_keys():
    catalog = load_catalog()
    del catalog["usage"]["mandatory-flags"]["flags"]
    catalog["usage"]["software-stack-deployment"].pop("apptainer")
    catalog["usage"]["report"] = "yes"
    problems = catalog_problems(catalog)
    assert len(problems) == 3, problems


# ---- (c) config/README.md's tables are the schemas' --------------------------------------------


def config_keys_tool():
    spec = importlib.util.spec_from_file_location("config_keys", ROOT / "tools/config_keys.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_readme_tables_are_current():
    """Run `python tools/config_keys.py` when this fails: it rewrites the tables."""
    tool = config_keys_tool()
    text = (ROOT / "config/README.md").read_text()
    assert tool.rewrite(text) == text
    # and the documentation site shows that file
    assert '--8<-- "config/README.md"' in (ROOT / "docs/config-keys.md").read_text()


def test_config_readme_check_finds_a_stale_table():
    tool = config_keys_tool()
    text = (ROOT / "config/README.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `finetune.seeds` |"))
    stale = text.replace(row + "\n", "")
    assert stale != text and tool.rewrite(stale) == text
    # a description edited in the README, not in the schema, is put back too
    edited = text.replace(row, row.replace("one run per seed", "one run per sead"))
    assert edited != text and tool.rewrite(edited) == text


# ---- (d) README.md: short, and its commands are the ones that are run ----------------------------


def readme() -> str:
    return (ROOT / "README.md").read_text()


def section(text: str, title: str) -> str:
    """The body of `## title` in a Markdown text."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section {title!r}"
    return match.group(1)


def code_blocks(text: str, language: str = "") -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.M | re.S)


def ci_commands() -> list[str]:
    """The command lines of .ci/run (not its comments), each with `--quiet` dropped."""
    lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    return [
        " ".join(line.replace(" --quiet", "").split())
        for line in lines
        if line and not line.startswith("#")
    ]


def quick_start_problems(text: str, ci: list[str]) -> list[str]:
    """The README's quick start: a pipeline command and a test command; every step of the test
    command is a line of .ci/run, and the test run itself is .ci/run's last command."""
    blocks = [b.strip() for b in code_blocks(section(text, "Quick start"), "bash")]
    tests = [b for b in blocks if "pytest" in b]
    runs = [b for b in blocks if "snakemake" in b and "pytest" not in b]
    if len(tests) != 1 or len(runs) != 1 or "\n" in tests[0] + runs[0]:
        return [f"want one one-line test command and one pipeline command, found {blocks}"]
    problems = []
    steps = [" ".join(step.split()) for step in tests[0].split(" && ")]
    problems += [f"test step not run by .ci/run: {step}" for step in steps if step not in ci]
    if ci and ci[-1] != steps[-1]:
        problems.append(f".ci/run ends with {ci[-1]!r}, not the README's {steps[-1]!r}")
    run_steps = runs[0].split(" && ")
    if run_steps[0] != steps[0]:
        problems.append(f"the pipeline command's environment differs: {run_steps[0]}")
    if run_steps[1:2] != [steps[1].replace("'.[dev]'", ".")]:
        problems.append(f"the pipeline command should install dnalm without extras: {run_steps}")
    if not re.fullmatch(r"\.venv/bin/snakemake --cores \d+", run_steps[-1]):
        problems.append(f"the pipeline command should run the default config: {run_steps[-1]}")
    return problems


def test_readme_is_short():
    lines = readme().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_readme_quick_start_is_what_ci_runs():
    assert quick_start_problems(readme(), ci_commands()) == []
    # the CPU-only wheel of the pinned torch is named
    pinned = next(d for d in load_pins()[0]["project"]["dependencies"] if d.startswith("torch"))
    assert pinned in readme() and "https://download.pytorch.org/whl/cpu" in readme()


def test_quick_start_check_finds_a_changed_command():
    text, ci = readme(), ci_commands()
    assert quick_start_problems(text.replace("pytest -q", "pytest -x"), ci)
    assert quick_start_problems(text, [*ci, "echo done"])
    assert quick_start_problems(text.replace("pip install -e . &&", "pip install foo &&"), ci)


def test_readme_links_the_docs_pages():
    """Every page of the site is linked from "Where to go next" (the site's own home aside)."""
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    pages = {page for item in nav for page in item.values()} - {"index.md", "config-keys.md"}
    linked = set(re.findall(r"\]\(docs/([\w.-]+\.md)\)", section(readme(), "Where to go next")))
    assert pages <= linked, pages - linked
    assert all((ROOT / "docs" / page).is_file() for page in linked)


def test_readme_own_data_example_plans(tmp_path):
    """The README's genome sheet and config, on tiny FASTA files of the names they give: a real
    dry run plans the whole study (the schemas and every parse-time check pass)."""
    body = section(readme(), "Your own genomes")
    sheet = next(b for b in code_blocks(body) if b.startswith("genome\t"))
    config_text = code_blocks(body, "yaml")[0]
    assert len(sheet.splitlines()) == 4 and len(config_text.splitlines()) <= 20
    config = yaml.safe_load(config_text)
    (tmp_path / config["genomes"]).write_text(sheet)
    (tmp_path / "my_config.yaml").write_text(config_text)
    for row in sheet.splitlines()[1:]:
        source = tmp_path / row.split("\t")[3]
        source.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(source, "wt") as fasta:
            for i in range(3):
                fasta.write(f">{source.name.split('.')[0]}_{i}\n" + "ACGTTGCA" * 250 + "\n")
    out = run_snakemake(tmp_path, "-n", configfile=tmp_path / "my_config.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    for rule in ("acquire_genome", "pretrain", "finetune", "aggregate"):
        assert re.search(rf"^{rule}\s+\d+$", out.stdout, re.M), (rule, out.stdout[-2000:])


# ---- (e) nothing outside the repository ------------------------------------------------------

OUTSIDE = re.compile(r"\.\./shared|DESIGN\.md|\bissue #?\d", re.I)
SCANNED = ("README.md", "docs", "config", "src", "workflow")


def outside_references(root: Path) -> list[str]:
    """`file:line: text` of every line under SCANNED that points outside the repository."""
    files = []
    for name in SCANNED:
        path = root / name
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    # build products (bytecode, the egg-info pip writes from an older README) are not our text
    files = [
        p for p in files if not any(x == "__pycache__" or x.endswith(".egg-info") for x in p.parts)
    ]
    found = []
    for path in files:
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return found


def test_nothing_points_outside_the_repository():
    assert outside_references(ROOT) == []


def test_outside_check_finds_each_kind(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/a.md").write_text("ok\nsee ../shared/data\n")
    (tmp_path / "config").mkdir()
    (tmp_path / "config/b.yaml").write_text("# as DESIGN.md says\n# fixed in issue 12\n")
    (tmp_path / "README.md").write_text("fine\n")
    (tmp_path / "src/pkg.egg-info").mkdir(parents=True)
    (tmp_path / "src/pkg.egg-info/PKG-INFO").write_text("built from ../shared/data\n")
    found = outside_references(tmp_path)
    assert [f.split(":")[:2] for f in found] == [
        ["docs/a.md", "2"],
        ["config/b.yaml", "1"],
        ["config/b.yaml", "2"],
    ]


def test_readme_describes_offline_use_as_the_mirror_key():
    """Offline use is the acquire.mirror key on a local folder, not a path of this machine."""
    assert "acquire: {mirror: /path/to/local/mirror}" in readme()


def test_fixtures_that_cost_minutes_are_built_once_per_run():
    """docs/installation.md: under pytest-xdist a test file stays on one worker (`--dist
    loadfile`), so a session fixture whose tests all live in one file is built once. The chain's
    run (minutes) and the shipped configs' job graphs must therefore each be used by one file."""
    pytest_options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    assert "--dist loadfile" in pytest_options["ini_options"]["addopts"]
    for fixture in ("chain_run", "planned_dag"):
        users = {
            path.name
            for path in (ROOT / "tests").glob("test_*.py")
            if re.search(rf"^def test_\w+\([^)]*\b{fixture}\b", path.read_text(), re.M)
        }
        assert len(users) == 1, (fixture, users)
