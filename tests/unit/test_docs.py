"""The README and docs/ say what the code does: every link resolves, every file they name exists, and every
`python -m` command they show parses with the real command line (a renamed flag or verb fails here)."""
import re
import shlex
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NAMED_FILE = re.compile(r"`((?:edge|trainer|compile|benchmarks|board_configs|scripts|docs|tests|packages)/"
                        r"[\w/.-]+\.(?:py|yaml|md|sh|html|json))`")


def parsers():
    from benchmarks.cli import build_parser as benchmarks
    from compile.cli import build_parser as compile_
    from edge.commands.cli import build_parser as edge
    from trainer.cli import build_parser as trainer

    return {"edge": edge, "trainer": trainer, "compile": compile_, "benchmarks": benchmarks}


def shown_commands(page: Path) -> list[str]:
    """Each `python -m ...` line of the page's shell code blocks, continuation lines joined, comments dropped."""
    commands, joined = [], ""
    in_block = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_block = line.strip() in ("```bash", "```sh", "```shell")
            continue
        if not in_block:
            continue
        joined += line.rstrip().removesuffix("\\") + " "
        if line.rstrip().endswith("\\"):
            continue
        text, joined = joined.split(" #")[0].strip(), ""
        match = re.search(r"(?:^|&&\s*|\s)python3? -m (edge|trainer|compile|benchmarks)(?=\s|$)(.*)", text)
        if match:
            commands.append(f"{match.group(1)}{match.group(2)}")
    return commands


def test_the_readme_is_a_way_in_and_links_its_depth():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 300
    assert "../shared/DESIGN.md" not in "".join(page.read_text() for page in PAGES)
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)\)", readme))
    assert linked >= {page.name for page in PAGES[1:] if page.name != "dlib_chip_template.md"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_and_named_file_exists(page):
    text = page.read_text()
    links = [target.split("#")[0] for target in re.findall(r"\]\(([^)\s]+)\)", text)
             if not target.startswith(("http://", "https://", "#", "mailto:"))]
    missing = [link for link in links if link and not (page.parent / link).exists()]
    missing += [name for name in NAMED_FILE.findall(text) if not (ROOT / name).exists()]
    assert missing == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_shown_parses(page, monkeypatch):
    monkeypatch.setattr("sys.stderr", open("/dev/null", "w"))     # argparse's usage line on a failure
    failures = []
    for command in shown_commands(page):
        module, *argv = shlex.split(command)
        parser = parsers()[module]()
        try:
            _, extra = parser.parse_known_args(argv)
        except SystemExit:
            failures.append(command)
            continue
        if extra and not (module == "trainer" and all("=" in token for token in extra)):
            failures.append(f"{command}  (unknown: {' '.join(extra)})")
    assert failures == []
