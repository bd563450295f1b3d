"The documentation site builds offline (nbdev-proc-nbs + smalldocs) and has a page for every exported module."
import shutil, subprocess, sys
from pathlib import Path
from test_packaging import ROOT, BIN, exports

def test_docs_site_has_a_page_per_module(tmp_path):
    shutil.copytree(ROOT/'nbs', tmp_path/'nbs')
    shutil.copy(ROOT/'pyproject.toml', tmp_path)
    subprocess.run([BIN/'nbdev-proc-nbs'], cwd=tmp_path, check=True, capture_output=True)
    subprocess.run([BIN/'smalldocs', 'render', '-q', tmp_path/'_proc'], check=True, capture_output=True)
    site = tmp_path/'_proc'/'docs'
    assert (site/'index.html').is_file()
    for nb, mod in exports().items():
        page = site/f'{nb}.html'
        assert page.is_file(), f'no docs page for module {mod} ({nb}.ipynb)'
        assert len(page.read_text()) > 2000
