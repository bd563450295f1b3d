"Packaging and notebook checks: one notebook per module, exports in sync, the wheel carries the sample and its licence."
import json, re, shutil, subprocess, sys, zipfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

def exports() -> dict:
    "notebook name -> module it exports (`#| default_exp`)."
    res = {}
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        for c in json.loads(nb.read_text())['cells']:
            m = re.search(r'^#\|\s*default_exp\s+(\S+)', ''.join(c['source']), re.M)
            if m: res[nb.stem] = m[1]; break
    return res

def test_one_notebook_per_module():
    mods = list(exports().values())
    assert len(mods) == len(set(mods)), 'two notebooks export the same module'
    on_disk = {p.stem for p in (ROOT/'anomaly_fastai').glob('*.py')} - {'__init__', '_modidx'}
    assert on_disk == set(mods), f'modules without a notebook: {on_disk - set(mods)}; notebooks without a module: {set(mods) - on_disk}'

def test_export_round_trip(tmp_path):
    "Exporting the notebooks afresh reproduces the committed modules byte for byte."
    shutil.copytree(ROOT/'nbs', tmp_path/'nbs')
    shutil.copy(ROOT/'pyproject.toml', tmp_path)
    (tmp_path/'anomaly_fastai').mkdir()
    shutil.copy(ROOT/'anomaly_fastai'/'__init__.py', tmp_path/'anomaly_fastai')
    subprocess.run([BIN/'nbdev-export'], cwd=tmp_path, check=True, capture_output=True)
    for f in sorted((ROOT/'anomaly_fastai').glob('*.py')):
        assert (tmp_path/'anomaly_fastai'/f.name).read_text() == f.read_text(), f'{f.name} differs from its notebook: run nbdev-export'

def test_notebooks_have_no_heavy_outputs():
    for nb in (ROOT/'nbs').glob('*.ipynb'):
        assert nb.stat().st_size < 500_000, f'{nb.name}: {nb.stat().st_size} bytes; clear its outputs (nbdev-clean)'

def test_wheel_carries_sample_and_licences(tmp_path):
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', tmp_path, ROOT],
                   check=True, capture_output=True)
    whl, = tmp_path.glob('anomaly_fastai-*.whl')
    names = set(zipfile.ZipFile(whl).namelist())
    for mod in exports().values(): assert f'anomaly_fastai/{mod}.py' in names
    assert 'anomaly_fastai/sample/bottle/license.txt' in names and 'anomaly_fastai/sample/README.md' in names
    assert sum(n.startswith('anomaly_fastai/sample/bottle/train/good/') for n in names) == 60
    assert sum(n.startswith('anomaly_fastai/sample/bottle/ground_truth/') for n in names) == 15
    meta = next(n for n in names if n.endswith('METADATA'))
    assert 'Apache-2.0' in zipfile.ZipFile(whl).read(meta).decode()
    assert whl.stat().st_size < 5_000_000

def test_readme_starts_with_the_two_commands():
    readme = (ROOT/'README.md').read_text()
    assert 'make demo' in readme and 'make test' in readme
    assert 'make test' in (ROOT/'.ci'/'run').read_text()
