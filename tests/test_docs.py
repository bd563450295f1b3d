"The documentation site builds offline (nbdev-proc-nbs + smalldocs), has a page for every exported module and no broken links."
import shutil, subprocess, sys
from pathlib import Path
from test_packaging import ROOT, BIN, exports

def test_docs_site_has_a_page_per_module(tmp_path):
    shutil.copytree(ROOT/'nbs', tmp_path/'nbs')
    shutil.copy(ROOT/'pyproject.toml', tmp_path)
    subprocess.run([BIN/'nbdev-proc-nbs'], cwd=tmp_path, check=True, capture_output=True)
    r = subprocess.run([BIN/'smalldocs', 'render', '-q', tmp_path/'_proc'], check=True, capture_output=True, text=True)
    broken = [l for l in (r.stdout + r.stderr).splitlines() if 'broken link' in l]
    assert not broken, '\n'.join(broken)  # e.g. a fully qualified `module.symbol` that nbdev links to module.html
    site = tmp_path/'_proc'/'docs'
    assert (site/'index.html').is_file()
    for nb, mod in exports().items():
        page = site/f'{nb}.html'
        assert page.is_file(), f'no docs page for module {mod} ({nb}.ipynb)'
        assert len(page.read_text()) > 2000
