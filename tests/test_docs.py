"""The documentation holds together: every relative link, `#anchor` and image of README.md and
docs/*.md resolves (anchors made as GitHub makes them), the README's set-up commands are the
ones CI runs, and each command's `--help` names it `ganqp <command>` and points to its page."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced and indented code blocks (where `#` and `[x](y)` are text)."""
    out, fence, prev_blank = [], None, True
    for line in text.splitlines():
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)[0] * 3
            out.append("")
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            out.append("")
        elif line.startswith("    ") and (prev_blank or not out or out[-1] == ""):
            out.append("")  # an indented code block (continues while indented)
        else:
            out.append(line)
        prev_blank = not line.strip()
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text (links and code marks dropped), lowercased,
    punctuation other than `-` and `_` removed, each space a hyphen."""
    text = LINK.sub(lambda m: m.group(2), heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(path.read_text()):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[tuple[bool, str]]:
    """(is an image, target) of every Markdown link and image outside code."""
    found = []
    for line in prose_lines(path.read_text()):
        for m in LINK.finditer(INLINE_CODE.sub("", line)):
            found.append((m.group(1) == "!", m.group(3)))
    return found


def broken_links(path: Path) -> list[str]:
    bad = []
    for image, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists() or (image and not dest.is_file()):
            bad.append(f"{target}: {dest.relative_to(ROOT) if ROOT in dest.parents else dest} "
                       "does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading of {dest.name} has the anchor #{anchor}")
    return bad


def test_slug_follows_github() -> None:
    assert slug("The table: scripts/fid_table.py") == "the-table-scriptsfid_tablepy"
    assert slug("Encoder models: BiGAN-QP, O-GAN and `ganqp reconstruct`") == \
        "encoder-models-bigan-qp-o-gan-and-ganqp-reconstruct"
    assert slug("The offline digits metric: `fid.extractor=digits`") == \
        "the-offline-digits-metric-fidextractordigits"
    assert slug("Reproducing the paper's FID table") == "reproducing-the-papers-fid-table"
    assert slug("`train.*` keys") == "train-keys"
    page = "# A\n## Same\n```\n# not a heading\n```\n## Same\n### Same\n"
    path = ROOT / "tests" / "_slug_probe.md"
    try:
        path.write_text(page)
        assert anchors(path) == {"a", "same", "same-1", "same-2"}
    finally:
        path.unlink()


def test_pages_exist_and_readme_links_each() -> None:
    names = {"training", "objectives", "encoders", "metrics", "table", "data", "reliability",
             "performance", "development", "report"}
    assert {p.stem for p in PAGES[1:]} >= names
    linked = {Path(t.partition("#")[0]).stem for _, t in links(ROOT / "README.md")
              if t.startswith("docs/")}
    assert linked >= names, names - linked


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_link_anchor_and_image_resolves(page: Path) -> None:
    assert links(page), f"{page.name} links nothing"
    assert broken_links(page) == []


# ---- the README's set-up commands are the ones CI runs ----------------------------------------

def normalise(command: str) -> str:
    """pip's -q only quietens it: the same install either way."""
    words = shlex.split(command)
    if words[:2] == ["pip", "install"]:
        words = [w for w in words if w not in ("-q", "--quiet")]
    return shlex.join(words)


def readme_setup() -> list[list[str]]:
    """The commands of the README's first code block, each split at `&&` into its steps."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"^```(?:bash|sh)?\n(.*?)^```", text, re.M | re.S)
    assert block, "README.md has no code block"
    commands = [line for line in block.group(1).splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    return [[normalise(step) for step in c.split("&&")] for c in commands]


def ci_steps() -> list[str]:
    """The commands .ci/run runs, less the shell's own set-up (set, cd) and the system
    packages it installs when missing (`command -v X || ...`: CI's machine, not the
    project's install)."""
    steps = []
    for line in (ROOT / ".ci" / "run").read_text().splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#") or line.split()[0] in ("set", "cd", "command"):
            continue
        steps.append(normalise(line))
    return steps


def test_ci_installs_the_browser_the_report_test_needs() -> None:
    """tests/test_report_browser.py fails in CI without chromium, so CI installs it."""
    run = (ROOT / ".ci" / "run").read_text()
    assert "command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q " \
           "chromium)" in run


def test_readme_setup_commands_are_what_ci_runs() -> None:
    setup = readme_setup()
    assert len(setup) == 2, setup
    train, tests = setup
    ci = ci_steps()
    lint = "ruff check ."
    assert lint in ci, ".ci/run no longer runs ruff"
    # CI = the README's test command, with the lint step added before the tests.
    assert [s for s in ci if s != lint] == tests, (ci, tests)
    assert tests[-1] == "pytest" and ci[-1] == "pytest"
    # The first command: the same venv, the install without the test extra, the default job.
    install = tests[2].replace('".[test]"', ".").replace("'.[test]'", ".").replace(".[test]", ".")
    assert train == [*tests[:2], install, "ganqp train"], (train, tests)


# ---- each command's --help -------------------------------------------------------------------

@pytest.mark.parametrize(("command", "page"), [
    ("train", "docs/training.md"),
    ("sample", "docs/training.md#sampling"),
    ("reconstruct", "docs/encoders.md"),
    ("fid", "docs/metrics.md"),
    ("prepare", "docs/data.md#prepared-data-sets-ganqp-prepare"),
    ("report", "docs/report.md"),
])
def test_command_help_names_ganqp_and_its_page(cli, command: str, page: str) -> None:
    r = cli(command, "--help")
    assert r.code == 0, r
    assert r.out.lstrip().startswith(f"ganqp {command}: "), r.out[:200]  # its name, first
    assert f"Documentation: {page} " in r.out
    assert "cli is powered" not in r.out and "is powered by Hydra" not in r.out
    file, _, anchor = page.partition("#")
    assert (ROOT / file).is_file() and (not anchor or anchor in anchors(ROOT / file))


def test_top_level_help_points_to_each_page(cli) -> None:
    r = cli("--help")
    assert r.code == 0
    for line in ("  train        docs/training.md", "  fid          docs/metrics.md",
                 "  prepare      docs/data.md#prepared-data-sets-ganqp-prepare"):
        assert line in r.out
