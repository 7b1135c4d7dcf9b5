"""Build the documentation site offline, for machines without quarto (which `nbdev_docs` needs): nbdev's notebook
processor (`proc_nbs`: show_doc, hidden cells, directives), then nbconvert to HTML, one page per notebook, with the
sidebar of `nbs/sidebar.yml` and MathJax 2.7 served from the site itself (the `jupyter-server-mathjax` package,
STIX-Web fonts), so the pages render with no network.

    python scripts/offline_docs.py [--out _offline_docs]     # then open _offline_docs/index.html
"""
import argparse, html, os, re, shutil
from pathlib import Path

import nbformat, yaml
from nbconvert import HTMLExporter
from nbconvert.preprocessors import TagRemovePreprocessor

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'
MATHJAX = 'mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full'
# before MathJax.js loads: the STIX-Web web fonts shipped with it, never the CDN or local system fonts
FONT_CONFIG = ('<script type="text/x-mathjax-config">MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], '
               'preferredFont: null, webFont: "STIX-Web", imageFont: null}});</script>')
NAV_CSS = ('<style>.gl-nav{position:fixed;top:0;left:0;width:230px;height:100%;overflow:auto;padding:12px;'
           'font:14px sans-serif;background:#f7f7f7;border-right:1px solid #ddd}.gl-nav h4{margin:12px 0 4px}'
           '.gl-nav a{display:block;padding:2px 0;color:#2a6;text-decoration:none}.gl-nav a.here{font-weight:bold}'
           'body{margin-left:260px !important}pre{white-space:pre-wrap;overflow-wrap:anywhere}</style>')


def page_name(notebook: str) -> str:
    "The HTML page of a notebook: index.ipynb → index.html, 04_structure.ipynb → 04_structure.html."
    return Path(notebook).with_suffix('.html').name


def sidebar_sections() -> list[tuple[str, list[str]]]:
    "(section title, notebooks) in the order of nbs/sidebar.yml; top-level entries go under ''."
    out = []
    for item in yaml.safe_load((NBS / 'sidebar.yml').read_text())['website']['sidebar']['contents']:
        if isinstance(item, str): out.append(('', [item]))
        else: out.append((item['section'], list(item['contents'])))
    return out


def _frontmatter_to_heading(nb) -> str:
    """nbdev's processor turns a notebook's title cell into quarto's YAML front matter (a raw cell); quarto renders it
    as the page title and lead. Here it becomes the same as markdown: `# title` and the description as a quote.
    Returns the title ('' when the notebook has none)."""
    for i, c in enumerate(nb.cells):
        if c.cell_type == 'raw' and c.source.lstrip().startswith('---'):
            fm = yaml.safe_load(c.source.strip().strip('-')) or {}
            title, lead = str(fm.get('title', '')), str(fm.get('description', '')).strip()
            nb.cells[i] = nbformat.v4.new_markdown_cell(f"# {title}" + (f"\n\n> {lead}" if lead else ''))
            return title
    return ''


def _nav(titles: dict, here: str) -> str:
    parts = ['<nav class="gl-nav">']
    for section, nbs in sidebar_sections():
        if section: parts.append(f'<h4>{html.escape(section)}</h4>')
        for nb in nbs:
            cls = ' class="here"' if nb == here else ''
            parts.append(f'<a href="{page_name(nb)}"{cls}>{html.escape(titles.get(nb) or Path(nb).stem)}</a>')
    return ''.join(parts) + '</nav>'


def _local_links(body: str) -> str:
    "Links between notebooks point at their pages (quarto does the same rewrite)."
    page = lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"'
    return re.sub(r'href="(?!https?:|#|mailto:)([^"#]+)\.ipynb(#[^"]*)?"', page, body)


def _quarto_cells(nb):
    """What quarto does with nbdev's processed cells, done here: a code cell marked `#| echo: false` shows only its
    output (show_doc cells), the `#|` directive lines are not shown, and pandoc link attributes such as
    `{target="_blank" ...}` in markdown outputs are dropped (nbconvert's markdown would print them)."""
    for c in nb.cells:
        if c.cell_type != 'code': continue
        if re.search(r'^#\|\s*echo:\s*false\s*$', c.source, re.M):
            c.metadata.setdefault('tags', []).append('remove_input')
        c.source = '\n'.join(l for l in c.source.splitlines() if not l.startswith('#|')).strip('\n')
        for o in c.get('outputs', []):
            if 'text/markdown' in o.get('data', {}):
                o['data']['text/markdown'] = re.sub(r'(\]\([^)]*\))\{[^}]*\}', r'\1', o['data']['text/markdown'])


def build(out=ROOT / '_offline_docs', n_workers: int = 1) -> list[Path]:
    "Process every notebook with nbdev, render each to `out/<name>.html`; returns the pages written."
    from nbdev.serve import proc_nbs
    import jupyter_server_mathjax
    out = Path(out)
    cwd = os.getcwd()
    os.chdir(ROOT)                                   # proc_nbs reads settings.ini from the working directory
    try: cache = Path(proc_nbs(force=True, n_workers=n_workers))
    finally: os.chdir(cwd)
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / 'static', out / 'mathjax')
    if (NBS / 'styles.css').exists(): shutil.copy(NBS / 'styles.css', out / 'styles.css')
    if (NBS / 'images').exists(): shutil.copytree(NBS / 'images', out / 'images')   # figures the markdown links to
    nbs = {p.name: nbformat.read(p, as_version=4) for p in sorted(cache.glob('*.ipynb'))}
    titles = {name: _frontmatter_to_heading(nb) for name, nb in nbs.items()}
    for nb in nbs.values(): _quarto_cells(nb)
    exporter = HTMLExporter(template_name='lab', mathjax_url=MATHJAX, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    remove = TagRemovePreprocessor(remove_input_tags={'remove_input'}, enabled=True)
    exporter.register_preprocessor(remove, enabled=True)
    pages = []
    for name, nb in nbs.items():
        body, _ = exporter.from_notebook_node(nb, resources={'metadata': {'name': titles[name] or Path(name).stem}})
        body = _local_links(body)
        body = body.replace('<head>', '<head>\n' + FONT_CONFIG + NAV_CSS, 1)
        body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + _nav(titles, name), body, count=1)
        (out / page_name(name)).write_text(body)
        pages.append(out / page_name(name))
    return pages


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=str(ROOT / '_offline_docs'))
    args = ap.parse_args()
    pages = build(args.out)
    print(f"{len(pages)} pages → {Path(args.out) / 'index.html'}")
