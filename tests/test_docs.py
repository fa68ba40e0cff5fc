"""The README and the pages under docs/ stay usable: links lead somewhere, and Windows has its commands.

The rules, for whoever edits the documentation:

1. **Links.** Every relative link in README.md and docs/*.md (outside code) names a file that
   exists; a ``#anchor`` names a heading of that page, spelled as GitHub spells it (lower case,
   punctuation dropped, spaces as hyphens). Every page in docs/ is linked from README.md.
2. **Windows.** A fenced ``sh`` block (or ``bash``, ``shell``, ``zsh``, ``console``) holds commands
   for Linux and macOS. The next fenced block after it must be ``powershell``: the same commands
   for Windows PowerShell (prose may sit between the two). Two words after the language opt out:
   ``sh any-os`` when every line runs unchanged in PowerShell, ``sh no-windows`` when there is no
   Windows form (the text beside it must say why). Output, file contents and the like go in
   ``text`` blocks (or blocks with no language), which need no pair.
3. **PowerShell is PowerShell.** A ``powershell`` block holds none of the Unix habits that fail
   there: ``.venv/bin/``, ``export``, ``source``, ``rm -rf``, ``cp``, a bare ``curl`` (an alias of
   Invoke-WebRequest in Windows PowerShell 5.1; write ``curl.exe``), ``&&`` (not in 5.1) or a
   backslash at the end of a line.
4. **The README's commands are the ones that run.** Its first ``sh`` block is the run command (the
   newcomer test runs it), its second the test command; ``make run``, ``make test`` and .ci/run use
   exactly those.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]

SHELL_LANGUAGES = {"sh", "bash", "shell", "zsh", "console"}
POWERSHELL_LANGUAGES = {"powershell", "pwsh", "ps1"}
OPT_OUTS = {"any-os", "no-windows"}

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>```+|~~~+)(?P<info>[^\n`]*)$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*#*\s*$")

UNIX_IN_POWERSHELL = {
    ".venv/bin/": re.compile(r"\.venv/bin/"),
    "export": re.compile(r"^\s*export\s", re.MULTILINE),
    "source": re.compile(r"(^|[;&|]\s*)source\s", re.MULTILINE),
    "rm -rf": re.compile(r"\brm\s+-rf?\b"),
    "cp": re.compile(r"(^|[;&|]\s*)cp\s", re.MULTILINE),
    "a bare curl": re.compile(r"(^|[\s;(|&])curl(?!\.exe)\s", re.MULTILINE),
    "&&": re.compile(r"&&"),
    "a backslash continuation": re.compile(r"\\\s*$", re.MULTILINE),
}


def blocks(path: Path) -> list[dict]:
    """The fenced code blocks of a Markdown file: language, the words after it, body, first line."""
    found, current = [], None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = FENCE.match(line)
        if current is None:
            if match:
                words = match["info"].split()
                current = {"fence": match["fence"], "language": words[0].lower() if words else "",
                           "flags": set(words[1:]), "lines": [], "line": number}
        elif match and match["fence"].startswith(current["fence"]) and not match["info"].strip():
            current["body"] = "\n".join(current.pop("lines"))
            found.append(current)
            current = None
        else:
            current["lines"].append(line)
    assert current is None, f"{path.name}: the block opened on line {current['line']} is never closed"
    return found


def outside_fences(path: Path) -> list[str]:
    """The lines outside fenced blocks (a ``# comment`` in a shell block is not a heading)."""
    kept, inside = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        match = FENCE.match(line)
        if inside is None and match:
            inside = match["fence"]
        elif inside is not None and match and match["fence"].startswith(inside) and not match["info"].strip():
            inside = None
        elif inside is None:
            kept.append(line)
    return kept


def prose(path: Path) -> str:
    """The text outside fenced blocks and inline code: where links live."""
    return INLINE_CODE.sub("", "\n".join(outside_fences(path)))


def slug(title: str) -> str:
    """A heading's anchor as GitHub makes it."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link in a heading anchors by its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for line in outside_fences(path):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match["title"])
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def relative_links(path: Path) -> list[str]:
    targets = [match["target"] for match in LINK.finditer(prose(path))]
    return [target for target in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)]


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page):
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        if not destination.exists():
            broken.append(f"{target}: no file {page_id(destination)}")
            continue
        if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: {destination.name} has no heading with the anchor #{anchor}")
    assert not broken, f"{page_id(page)} has broken links:\n" + "\n".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in relative_links(README)}
    orphans = [page_id(page) for page in PAGES[1:] if page.resolve() not in linked]
    assert not orphans, f"pages README.md does not link: {orphans}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_shell_block_has_its_powershell_form_next(page):
    found = blocks(page)
    missing = []
    for index, block in enumerate(found):
        if block["language"] not in SHELL_LANGUAGES or block["flags"] & OPT_OUTS:
            continue
        following = found[index + 1] if index + 1 < len(found) else None
        if following is None or following["language"] not in POWERSHELL_LANGUAGES:
            missing.append(f"line {block['line']}: {block['body'].splitlines()[0] if block['body'] else ''}")
    assert not missing, (f"{page_id(page)}: these sh blocks have no powershell block right after them "
                         "(or mark them `sh any-os` / `sh no-windows`):\n" + "\n".join(missing))


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_powershell_blocks_hold_no_unix_habits(page):
    wrong = [f"line {block['line']}: {habit}"
             for block in blocks(page) if block["language"] in POWERSHELL_LANGUAGES
             for habit, pattern in UNIX_IN_POWERSHELL.items() if pattern.search(block["body"])]
    assert not wrong, f"{page_id(page)}: powershell blocks with Unix commands in them:\n" + "\n".join(wrong)


def test_opt_outs_are_only_the_two_known_words():
    unknown = [f"{page_id(page)} line {block['line']}: {sorted(block['flags'])}"
               for page in PAGES for block in blocks(page)
               if block["language"] in SHELL_LANGUAGES and block["flags"] - OPT_OUTS]
    assert not unknown, f"unknown words after sh: {unknown} (use any-os or no-windows)"


def readme_commands() -> tuple[str, str]:
    shell = [block["body"].strip() for block in blocks(README) if block["language"] in SHELL_LANGUAGES]
    assert len(shell) >= 2, "README.md must start with the run command and the test command"
    return shell[0], shell[1]


def test_the_readme_starts_with_the_run_and_the_test_command():
    run, test = readme_commands()
    assert "requirements.txt" in run and run.endswith("server.py"), run
    assert "requirements-dev.txt" in test and test.endswith("-m pytest"), test


def test_make_and_ci_run_the_readme_commands():
    run, test = readme_commands()
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipes = dict(re.findall(r"^(\w+):\n\t(.+)$", makefile, flags=re.MULTILINE))
    assert recipes.get("run") == run
    assert recipes.get("test") == test
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    # .ci/run installs quietly (-q); otherwise it is the README's command.
    assert test in [line.replace(" -q ", " ").strip() for line in ci.splitlines()]


def test_the_rules_catch_what_they_promise(tmp_path):
    """The checks themselves, on a page made to break each rule once."""
    (tmp_path / "other.md").write_text("# A page\n\n## Its `second` heading: here\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[fine](other.md#its-second-heading-here) [gone](missing.md) [bad](other.md#nope)\n"
        "`[in code](missing-too.md)` [web](https://example.com/x.md)\n\n"
        "```sh\nls\n```\n\nprose\n\n```powershell\nGet-ChildItem\n```\n\n"
        "```sh\nrm -rf data\n```\n\n```text\noutput\n```\n\n"
        "```sh no-windows\nbench\n```\n\n"
        "```powershell\ncurl http://x && .venv/bin/python\n```\n",
        encoding="utf-8")
    assert relative_links(page) == ["other.md#its-second-heading-here", "missing.md", "other.md#nope"]
    assert anchors(tmp_path / "other.md") == {"a-page", "its-second-heading-here"}
    shell = [block for block in blocks(page) if block["language"] == "sh"]
    assert [block["flags"] for block in shell] == [set(), set(), {"no-windows"}]
    with pytest.raises(AssertionError) as caught:
        test_every_relative_link_leads_to_a_file_and_heading_that_exist(page)
    assert "missing.md: no file" in str(caught.value) and "no heading with the anchor #nope" in str(caught.value)
    assert "other.md#its-second-heading-here" not in str(caught.value)
    with pytest.raises(AssertionError, match="line 16: rm -rf data"):
        test_every_shell_block_has_its_powershell_form_next(page)
    with pytest.raises(AssertionError) as caught:
        test_powershell_blocks_hold_no_unix_habits(page)
    assert all(habit in str(caught.value) for habit in (".venv/bin/", "a bare curl", "&&"))
