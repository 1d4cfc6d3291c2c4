"""Every ``snakemake`` command the README and the pages in docs/ show, run here exactly as written.

Each runs as a dry run in a copy of the project with the default config, as a user who has
just cloned it would (a dry run plans the whole job graph, checks the config and loads the
profiles and plugins the command names).
A command must parse; it must also plan, unless it needs what this machine has not got
(conda, an S3 storage plugin, the real Market-1501, a user's checkpoint, a finished run), which it then says in its output.
"""

import re
import shutil

import pytest
import yaml

from conftest import ROOT, make_project, snakemake

# What a command may lack here, and how Snakemake or reidquant then says so.
NOT_HERE = {
    "--sdm conda": r"conda",
    "--default-storage-provider s3": r"snakemake-storage-plugin-s3|storage provider s3|s3",
    "source: market1501": r"dataset.source is market1501 but neither",
    "weights: model/ft_ResNet50": r"model.weights: model/ft_ResNet50/net_last.pth not found",
    # a report is of a finished run (test_workflow.py makes one after a real run)
    "--report": r"marked for report but does not exist",
}


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def readme_commands() -> list[str]:
    text = "\n".join(page.read_text() for page in PAGES)
    text = re.sub(r"\\\n\s*", " ", text)  # a shell line continued with a backslash
    blocks = [line.strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines()]
    spans = [span.replace("\n", " ").strip() for span in re.findall(r"`(snakemake [^`]*)`", text)]
    commands = {line[line.index("snakemake "):] for line in blocks + spans if "snakemake " in line}
    return sorted(command for command in commands if command.split()[1].startswith("-"))


def test_the_docs_show_the_example_config_as_it_is():
    text = (ROOT / "docs" / "variants.md").read_text()
    example = (ROOT / "config" / "example.yaml").read_text()
    assert example in re.findall(r"```yaml\n(.*?)```", text, re.S)


def test_the_readme_is_read_in_five_minutes():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


def test_every_page_the_readme_links_exists():
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(((?:docs|benchmarks|Market|model)[^)#]*)", text)
    assert links and all((ROOT / link).exists() for link in links), [link for link in links if not (ROOT / link).exists()]


def test_the_readme_shows_its_commands():
    commands = readme_commands()
    assert "snakemake --cores 4 results/summary.csv" in commands
    assert any("--sdm conda" in c and "profiles/slurm" in c for c in commands)
    assert any("profiles/kubernetes" in c for c in commands)


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs_as_written(tmp_path, command):
    import shlex

    words = shlex.split(command)[1:]
    project = make_project(tmp_path, yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    for extra in (ROOT / "config").glob("*.yaml"):  # the config files a command may name
        if extra.name != "config.yaml":
            shutil.copy2(extra, project / "config" / extra.name)
    shutil.copytree(ROOT / "benchmarks", project / "benchmarks", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    result = snakemake(project, *words, "--dry-run", cores=None)
    output = result.stdout + result.stderr
    assert not re.search(r"invalid choice|unrecognized arguments|expected one argument", output), output[-2000:]
    lacking = [pattern for needed, pattern in NOT_HERE.items() if needed in command]
    if result.returncode != 0:
        assert lacking and any(re.search(p, output) for p in lacking), output[-3000:]
