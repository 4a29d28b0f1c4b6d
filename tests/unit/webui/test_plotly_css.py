"""vendor/plotly/plotly.css holds the rules plotly.js would inject as an inline <style>.

The Content-Security-Policy allows no inline style, so the pages that draw charts link this file
with the id and class plotly.js looks for (``plotly.js-style-global``, ``no-inline-styles``) and
plotly.js adds no <style> of its own. After upgrading plotly.js, write the file anew:
``.venv/bin/python -m tests.unit.webui.test_plotly_css``.
"""

from __future__ import annotations

import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[3] / "webui" / "static" / "vendor" / "plotly"
BUNDLE = STATIC / "plotly-cartesian.min.js"
CSS = STATIC / "plotly.css"
TEMPLATES = Path(__file__).resolve().parents[3] / "webui" / "templates" / "webui"


def plotly_css(bundle: str) -> str:
    """The stylesheet plotly.js builds at load time (its ``plotcss`` rules), as a file.

    plotly.js inserts each rule at the top of its sheet, so the file lists them in reverse.
    """
    start = bundle.index('{"X,X div":')
    end = bundle.index("};for(", start)
    pairs = re.findall(
        r'"((?:[^"\\]|\\.)*)":(?:\'((?:[^\'\\]|\\.)*)\'|"((?:[^"\\]|\\.)*)")', bundle[start : end + 1]
    )
    rules = []
    for key, single, double in pairs:
        selector = (
            re.sub(r"^,", " ,", key).replace("X", ".js-plotly-plot .plotly").replace("Y", ".plotly-notifier")
        )
        rules.append(f"{selector} {{{single or double}}}")
    header = (
        "/* Rules plotly.js would inject as an inline <style>: see tests/unit/webui/test_plotly_css.py */"
    )
    return "\n".join([header, *reversed(rules)]) + "\n"


def test_the_stylesheet_matches_the_bundle():
    assert CSS.read_text() == plotly_css(BUNDLE.read_text())


def test_every_page_with_plotly_links_the_stylesheet_before_the_script():
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        if "plotly-cartesian.min.js" in text:
            link = text.find('id="plotly.js-style-global"')
            assert link != -1 and 'class="no-inline-styles"' in text, template.name
            assert link < text.index("plotly-cartesian.min.js"), template.name


if __name__ == "__main__":
    CSS.write_text(plotly_css(BUNDLE.read_text()))
    print(f"wrote {CSS}")
