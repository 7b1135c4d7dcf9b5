"""Offline checks of the documentation site (quarto itself is not installable here): the config files parse, every
notebook is in the sidebar, nbdev's pre-render processing runs on every notebook, and README.md matches index."""
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
    "README.md is index.ipynb rendered to markdown (nbdev_readme needs quarto; we render with nbconvert)."
    index = json.loads((NBS / 'index.ipynb').read_text())
    md = '\n'.join(''.join(c['source']) for c in index['cells'] if c['cell_type'] == 'markdown')
    readme = (ROOT / 'README.md').read_text()
    blocks = lambda s: re.findall(r'```sh\n(.*?)```', s, re.S)
    assert blocks(md) and blocks(md) == blocks(readme)
