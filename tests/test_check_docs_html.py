"""scripts/check_docs_html.py, the CI check that the built docs show their formulas rendered."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_docs_html.py"
spec = importlib.util.spec_from_file_location("check_docs_html", SCRIPT)
check = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)

MATHML = '<math xmlns="http://www.w3.org/1998/Math/MathML"><mi>α</mi></math>'


def site(tmp_path, body, source=None):
    """A one-page build: ``page.html`` with ``body`` (and ``_sources/page.rst.txt`` if given)."""
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "page.html").write_text(f"<html><head><script>var s = '\\\\(';</script>"
                                        f"<style>.x::before {{content: '\\\\['}}</style></head>"
                                        f"<body>{body}</body></html>", encoding="utf-8")
    if source is not None:
        (tmp_path / "_sources").mkdir()
        (tmp_path / "_sources" / "page.rst.txt").write_text(source, encoding="utf-8")
    return tmp_path


def test_rendered_formulas_pass_and_scripts_styles_and_code_are_not_prose(tmp_path):
    body = (f'<p>where <span class="math notranslate">{MATHML}</span> is, unlike <code>re.escape("(")</code>'
            '<code><span class="pre">\\(</span></code></p><pre>r"\\[x\\]"</pre>'
            f'<div class="math-wrapper docutils container"><div class="math notranslate">{MATHML}</div></div>')
    assert check.problems_of(site(tmp_path, body, source="where :math:`\\alpha` is")) == []
    assert check.main([str(tmp_path)]) == 0


@pytest.mark.parametrize("body", [
    '<p>where <span class="math notranslate nohighlight">\\(\\alpha(t)\\)</span> is</p>',  # MathJax's output
    '<div class="math notranslate nohighlight">\n\\[L = L_\\text{labeled}\\]</div>',
])
def test_latex_left_for_a_browser_script_fails(tmp_path, body):
    problems = check.problems_of(site(tmp_path, body))
    assert any("page.html:1: raw LaTeX in the visible text" in p for p in problems)
    assert any("page.html:" in p and "formula without MathML" in p for p in problems)
    assert any("no MathML in any page" in p for p in problems)
    assert check.main([str(tmp_path)]) == 1


def test_a_formula_rendered_as_plain_text_or_dropped_fails(tmp_path):
    plain = check.problems_of(site(tmp_path / "a", '<span class="math">alpha</span>' + MATHML))
    assert plain == ["page.html:1: formula without MathML"]
    dropped = check.problems_of(site(tmp_path / "b", "<p>where is</p>" + MATHML.replace("math", "span"),
                                     source=".. math::\n\n   L = 1\n"))
    assert "page.html: its source has formulas but the page has no MathML" in dropped


def test_no_build_fails(tmp_path):
    assert check.problems_of(tmp_path) == [f"{tmp_path}: no HTML page (build the docs first)"]
