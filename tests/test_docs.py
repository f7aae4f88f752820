"""docs/tour.md is runnable: its ```python blocks run in order in one namespace, and the files it names exist.

Blocks fenced as ```bash or ```text are shown to the reader and never run here (the 2-D demo at the end of
the tour is one of them).
"""
from __future__ import annotations

import re
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOUR = ROOT / "docs" / "tour.md"

_FENCE = re.compile(r"^```(\w*)[ \t]*$")
# A repository path such as minigrad/ops/norm.py or tests/test_gradcheck.py, not part of a longer path.
_PATH = re.compile(r"(?<![\w./-])((?:minigrad|ssgan|tests)/[\w/]*\w\.py)\b")
# A module named without its extension, such as ssgan/toy: a module file (ssgan/toy.py) or a package.
_MODULE = re.compile(r"(?<![\w./-])((?:minigrad|ssgan)/\w+)(?![\w./-])")
# Every module the tour names is checked (none is left out).
_NOT_CHECKED: set = set()


def python_blocks(text: str):
    """``(number, first line in the file, code)`` for each ```python block, numbered from 1."""
    blocks, lines = [], text.splitlines()
    inside, language, start, body = False, "", 0, []
    for lineno, line in enumerate(lines, start=1):
        fence = _FENCE.match(line)
        if not inside and fence:
            inside, language, start, body = True, fence.group(1), lineno + 1, []
        elif inside and line.strip() == "```":
            if language == "python":
                blocks.append((len(blocks) + 1, start, "\n".join(body) + "\n"))
            inside = False
        elif inside:
            body.append(line)
    assert not inside, f"docs/tour.md: the code block opened above line {start} is never closed"
    return blocks


def test_tour_blocks_run_in_order():
    blocks = python_blocks(TOUR.read_text(encoding="utf-8"))
    assert blocks, "docs/tour.md has no ```python blocks"
    namespace = {"__name__": "docs_tour"}
    for number, start, code in blocks:
        failure = None
        try:
            exec(compile(code, f"docs/tour.md block {number}", "exec"), namespace)
        except Exception:
            lines = code.splitlines()
            head = "\n".join("    " + line for line in lines[:4]) + ("\n    ..." if len(lines) > 4 else "")
            failure = f"docs/tour.md block {number} (line {start}) raised:\n{head}\n\n{traceback.format_exc()}"
        if failure:  # outside the except clause, so the report is not chained to the block's exception
            pytest.fail(failure, pytrace=False)


def test_tour_does_not_run_the_demo():
    """The 2-D demo trains a GAN: the tour shows its command in a ```bash block and never runs it."""
    for number, _, code in python_blocks(TOUR.read_text(encoding="utf-8")):
        assert "ssgan.toy" not in code and "ssgan/toy" not in code, f"block {number} would run the demo"


def test_tour_names_files_that_exist():
    text = TOUR.read_text(encoding="utf-8")
    paths = sorted(set(_PATH.findall(text)))
    assert len(paths) >= 10, f"expected the tour to name its source files, found only {paths}"
    missing = [p for p in paths if not (ROOT / p).is_file()]
    assert not missing, f"docs/tour.md names files that do not exist: {missing}"

    modules = sorted(set(_MODULE.findall(text)) - _NOT_CHECKED)
    absent = [m for m in modules if not ((ROOT / f"{m}.py").is_file() or (ROOT / m).is_dir())]
    assert not absent, f"docs/tour.md names modules that exist neither as a .py file nor as a package: {absent}"


def test_the_pictures_the_tour_and_the_readme_show_exist():
    for page in (ROOT / "docs" / "tour.md", ROOT / "README.md"):
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name} shows {target}, which does not exist"
