"""Offline checks of the documentation site (quarto itself is not installable here): the config files parse, every
notebook is in the sidebar, nbdev's pre-render processing runs on every notebook, README.md matches index, and the
offline HTML build renders in headless Chromium."""
import json, re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'


def test_quarto_config():
    q = yaml.safe_load((NBS / '_quarto.yml').read_text())
    assert q['project']['type'] == 'website'
    assert set(q['metadata-files']) == {'nbdev.yml', 'sidebar.yml'}
    assert yaml.safe_load((NBS / 'nbdev.yml').read_text())['project']['output-dir'] == '_docs'


def _sidebar_entries(items):
    for it in items:
        if isinstance(it, str): yield it
        else: yield from _sidebar_entries(it.get('contents', []))


def test_sidebar_lists_every_notebook():
    side = yaml.safe_load((NBS / 'sidebar.yml').read_text())['website']['sidebar']['contents']
    assert sorted(_sidebar_entries(side)) == sorted(p.name for p in NBS.glob('*.ipynb'))


def test_nbdev_preprocessing(tmp_path, monkeypatch):
    "nbdev_docs first runs proc_nbs (exports, show_doc, import cells); it must succeed on every notebook."
    from nbdev.serve import proc_nbs
    monkeypatch.chdir(ROOT)
    cache = proc_nbs(force=True, n_workers=1)
    done = {p.name for p in cache.glob('*.ipynb')}
    assert done == {p.name for p in NBS.glob('*.ipynb')}
    for p in cache.glob('*.ipynb'):
        nb = json.loads(p.read_text())
        assert nb['cells'], p.name


def test_readme_matches_index():
    """README.md is index.ipynb rendered by scripts/readme.py (nbdev_readme needs quarto); regenerate it after editing
    index."""
    import runpy
    render = runpy.run_path(str(ROOT / 'scripts' / 'readme.py'))['render']
    assert (ROOT / 'README.md').read_text() == render(), "README.md is stale: run python scripts/readme.py"
    assert '#| hide' not in render() and '](nbs/images/memory_headline.png)' in render()
    assert (NBS / 'images' / 'memory_headline.png').exists()


CHROMIUM = next((c for c in ('chromium', 'chromium-browser', 'google-chrome') if __import__('shutil').which(c)), None)
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
                  '--disable-component-update', '--disable-sync']


def _dom(page: Path) -> str:
    "The page's DOM after scripts ran (MathJax typesetting included), from headless Chromium."
    import subprocess
    r = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, '--virtual-time-budget=20000', '--dump-dom', page.as_uri()],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and '<body' in r.stdout, (page.name, r.stderr[-2000:])
    return r.stdout


def test_offline_site_renders_in_chromium(tmp_path):
    """The offline build (scripts/offline_docs.py: nbdev's processor, nbconvert, local MathJax) opened in headless
    Chromium: every page in the sidebar exists, math is typeset (no raw `$$`, no MathJax error), every plot of the
    notebook is an image on the page, and every local link or resource resolves."""
    import base64, runpy, pytest
    if CHROMIUM is None: pytest.skip('chromium is not installed (apt-get install chromium)')
    build = runpy.run_path(str(ROOT / 'scripts' / 'offline_docs.py'))['build']
    pages = build(tmp_path / 'site')
    side = yaml.safe_load((NBS / 'sidebar.yml').read_text())['website']['sidebar']['contents']
    assert {p.name for p in pages} == {Path(nb).with_suffix('.html').name for nb in _sidebar_entries(side)}
    for page in pages:
        nb = json.loads((ROOT / '_proc' / page.with_suffix('.ipynb').name).read_text())
        dom = _dom(page)
        text = re.sub(r'<(script|style)\b.*?</\1>', '', dom, flags=re.S)
        assert '$$' not in text and 'Math Processing Error' not in text, page.name
        assert 'output-file:' not in text and re.search(r'<h1\b', dom), \
            f"{page.name}: front matter not rendered as a title"
        shown = re.sub(r'<code>.*?</code>', '', text, flags=re.S)          # prose may quote a directive
        assert '{target=' not in shown and '#| ' not in shown, \
            f"{page.name}: quarto directives or link attributes shown raw"
        has_math = any('$' in ''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'markdown')
        if has_math:
            assert 'class="MathJax' in dom and 'STIXMathJax' in dom, f"{page.name}: math not typeset in STIX-Web"
        outputs = [o for c in nb['cells'] if c['cell_type'] == 'code' for o in c.get('outputs', [])]
        n_plots = sum('image/png' in o.get('data', {}) for o in outputs)
        imgs = re.findall(r'<img\b[^>]*\bsrc="data:image/png;base64,([^"]+)"', dom)
        assert len(imgs) >= n_plots, f"{page.name}: {len(imgs)} images for {n_plots} plots"
        assert all(base64.b64decode(s)[:8] == b'\x89PNG\r\n\x1a\n' for s in imgs), page.name
        for ref in re.findall(r'\b(?:href|src)="([^"]+)"', dom):
            if re.match(r'(?:[a-z]+:|#|//)', ref): continue                      # remote, data:, anchors
            target = (page.parent / re.split(r'[?#]', ref)[0]).resolve()
            assert target.exists(), f"{page.name}: broken local link {ref}"
