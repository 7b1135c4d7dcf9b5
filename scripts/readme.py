"""Render README.md from nbs/index.ipynb (what `nbdev_readme` does with quarto): nbconvert's markdown exporter, without
the cells marked `#| hide`, with links to notebooks and images made relative to the repository root.

    python scripts/readme.py            # writes README.md
"""
import re
from pathlib import Path

import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parents[1]


def render() -> str:
    nb = nbformat.read(ROOT / 'nbs' / 'index.ipynb', as_version=4)
    nb.cells = [c for c in nb.cells if not (c.cell_type == 'code' and re.search(r'^#\|\s*hide\b', c.source, re.M))]
    md, _ = MarkdownExporter().from_notebook_node(nb)
    md = re.sub(r'\]\((?!https?:|#)([^)\s]+\.(?:ipynb|png|svg|jpg))\)', r'](nbs/\1)', md)   # paths from the repo root
    return md


if __name__ == '__main__':
    (ROOT / 'README.md').write_text(render())
    print(f"wrote {ROOT / 'README.md'}")
