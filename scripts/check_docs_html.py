"""Checks that the built HTML docs show their formulas rendered, not as LaTeX source.

Usage: ``python scripts/check_docs_html.py docs/_build/html`` (after the Sphinx HTML build). Fails
(exit status 1, one line per problem) when

- the visible prose of a page contains ``\\(`` or ``\\[``, the delimiters a browser-side math
  renderer leaves in the page (not counted: ``<script>``, ``<style>`` and ``<template>`` content,
  which is not shown, and ``<code>`` and ``<pre>`` content, where these characters are code);
- a formula (an element of class ``math``, which every Sphinx math renderer writes) holds no
  ``<math>`` (MathML) element;
- a page whose reStructuredText source (the ``_sources/`` copy of the build) has a ``:math:`` role
  or a ``.. math::`` directive holds no MathML at all;
- the build holds no MathML at all.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

RAW_LATEX = re.compile(r"\\[(\[]")
HIDDEN_TAGS = {"script", "style", "template"}
CODE_TAGS = {"code", "pre"}
MATH_SOURCE = re.compile(r":math:`|^\s*\.\. math::", re.M)


@dataclass
class _Formula:
    tag: str
    line: int
    depth: int = 1  # open elements of the same tag, itself included
    has_mathml: bool = False


@dataclass
class PageReport:
    """What one page shows: its visible prose (not code) by line, and its formulas."""

    text: list[tuple[int, str]] = field(default_factory=list)
    mathml_elements: int = 0
    unrendered_formulas: list[int] = field(default_factory=list)  # lines of formulas without MathML


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.report = PageReport()
        self._hidden = 0
        self._formulas: list[_Formula] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in HIDDEN_TAGS or tag in CODE_TAGS:
            self._hidden += 1
        if tag == "math":
            self.report.mathml_elements += 1
            if self._formulas:
                self._formulas[-1].has_mathml = True
        if self._formulas and tag == self._formulas[-1].tag:
            self._formulas[-1].depth += 1
        classes = (dict(attrs).get("class") or "").split()
        if "math" in classes:
            self._formulas.append(_Formula(tag, self.getpos()[0]))

    def handle_endtag(self, tag: str) -> None:
        if tag in HIDDEN_TAGS or tag in CODE_TAGS:
            self._hidden = max(0, self._hidden - 1)
        if self._formulas and tag == self._formulas[-1].tag:
            formula = self._formulas[-1]
            formula.depth -= 1
            if formula.depth == 0:
                self._formulas.pop()
                if not formula.has_mathml:
                    self.report.unrendered_formulas.append(formula.line)
                elif self._formulas:
                    self._formulas[-1].has_mathml = True

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.report.text.append((self.getpos()[0], data))


def read_page(html: str) -> PageReport:
    """Parses one HTML page.

    Example:
        >>> report = read_page('<p>a <span class="math">\\\\(x^2\\\\)</span></p><script>"\\\\("</script>')
        >>> report.text, report.unrendered_formulas, report.mathml_elements
        ([(1, 'a '), (1, '\\\\(x^2\\\\)')], [1], 0)
        >>> read_page('<span class="math"><math><mi>x</mi></math></span>').unrendered_formulas
        []
    """
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    return parser.report


def problems_of(html_dir: Path) -> list[str]:
    """Every problem found in the HTML build in ``html_dir`` (none: the formulas are rendered)."""
    pages = sorted(html_dir.rglob("*.html"))
    if not pages:
        return [f"{html_dir}: no HTML page (build the docs first)"]
    problems: list[str] = []
    total_mathml = 0
    for page in pages:
        name = page.relative_to(html_dir).as_posix()
        report = read_page(page.read_text(encoding="utf-8"))
        total_mathml += report.mathml_elements
        for line, text in report.text:
            for match in RAW_LATEX.finditer(text):
                snippet = text[match.start():match.start() + 60].replace("\n", " ")
                problems.append(f"{name}:{line}: raw LaTeX in the visible text: {snippet!r}")
        for line in report.unrendered_formulas:
            problems.append(f"{name}:{line}: formula without MathML")
        source = html_dir / "_sources" / (name[: -len(".html")] + ".rst.txt")
        if source.is_file() and MATH_SOURCE.search(source.read_text(encoding="utf-8")):
            if report.mathml_elements == 0:
                problems.append(f"{name}: its source has formulas but the page has no MathML")
    if total_mathml == 0:
        problems.append(f"{html_dir}: no MathML in any page")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html_dir", type=Path, help="the Sphinx HTML output folder")
    args = parser.parse_args(argv)
    problems = problems_of(args.html_dir)
    for problem in problems:
        print(problem)
    pages = len(list(args.html_dir.rglob("*.html")))
    if problems:
        print(f"check_docs_html: {len(problems)} problem(s) in {pages} page(s)")
        return 1
    print(f"check_docs_html: {pages} pages, no raw LaTeX, every formula rendered as MathML")
    return 0


if __name__ == "__main__":
    sys.exit(main())
