"""Export parity: every registered method x format scores the embedded sample like the library's own scoring module
(`Detector.score`, which runs `Detector.module`: the graph that is exported); the runtime runs without torch.

Tolerances (stated, not silent):
- decisions (score > threshold): identical.
- scores and maps: 1e-4 absolute on a scale of 1, i.e. |exported - library| <= 1e-4 * max(1, max |library value|).
  ONNX Runtime's convolutions (MLAS) round differently from torch's (oneDNN): features differ by ~5e-6 relative, and a
  distance summed over 100+ channels carries that into values that reach 10-100 (PaDiM maps, Mahalanobis scores of the
  twin): ~1e-6 relative, which is above 1e-4 absolute there. Values below 1 (most scores) are held to 1e-4 absolute.
- norm_score: what `Detector.predict` reports, within 1e-4 plus the score tolerance carried through the normalisation.
Versions are pinned: a new onnxruntime / onnx / opset must be re-validated, so the test fails loudly when they change.
"""
import json, subprocess, sys
import numpy as np, pytest, torch
from anomaly_fastai.data import Preprocess, sample_dataset
from anomaly_fastai.detector import DETECTORS, all_methods
from anomaly_fastai.saving import load_detector, save_detector
from anomaly_fastai.evaluate import score_images
from anomaly_fastai.heads import CosineHead, L2Softmax, CenterHead
from anomaly_fastai.metrics import MinMax
from anomaly_fastai.scoring import get_scorer
from anomaly_fastai.twin_detector import head_gradient
from anomaly_fastai.export import OPSET, OUTPUTS, META_KEY, export_model, load_torchscript
import anomaly_fastai
from anomaly_fastai import runtime

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')

TESTED = dict(onnxruntime='1.32.0', onnx='1.23.2', opset=17)

SIZE = Preprocess(64)
# Every registered method with its own `test_params` (declared in its notebook: a new method is covered with nothing to add
# here), then variants that exercise other paths of the same graphs.
CASES = {m: (m, dict(pre=SIZE, **cls.test_params)) for m, cls in all_methods().items()}
CASES.update({
    'knn-kmap-100': ('knn', dict(pre=SIZE, k_map=100)),  # k_map beyond the 60 good images: the graph searches all of them, as the library does
    'knn-multiscale': ('knn', dict(pre=SIZE, scales=(1, 2 ** -0.5, 0.5))),  # scales 1/sqrt2 and 1/2: 45 and 32 px, resized inside the graph
    'twin-lof-ensemble': ('twin', dict(pre=SIZE, head='l2softmax', epochs=0, epochs_frozen=0, score='lof', k=5, ensemble=2)),
    'twin-mahalanobis': None,  # the 'twin' model with a Mahalanobis scorer (see `fitted`: no second training)
    'tiled-knn-96': ('tiled', dict(pre=Preprocess(96), inner='knn', tile=64, overlap=0.5)),
    # autoencoder inputs of 32 and 48 px: the antialiased resize from 64 px runs as matrices in the graph
    'autoencoder-l2-gray': ('autoencoder', dict(pre=SIZE, ae_size=48, loss='l2', color='gray', epochs=1)),
})

def test_every_method_is_covered():
    "Each registered method has a parity case (from its `test_params`): export names no method, so every method is exported by its own module."
    assert set(all_methods()) <= {c[0] for c in CASES.values() if c is not None}

def test_versions_are_the_tested_ones():
    "Exports are validated against these versions; update TESTED after re-running this file with new ones."
    assert ort.__version__ == TESTED['onnxruntime'], f'onnxruntime {ort.__version__}: parity was validated with {TESTED["onnxruntime"]}'
    assert onnx.__version__ == TESTED['onnx'], f'onnx {onnx.__version__}: parity was validated with {TESTED["onnx"]}'
    assert OPSET == TESTED['opset']

@pytest.fixture(scope='module')
def ds(): return sample_dataset()

@pytest.fixture(scope='module')
def x(ds): return {s: torch.stack([p.image(t.path) for t in ds.test]) for s, p in (('64', SIZE.resolved([ds.train[0].path])), ('96', Preprocess(96).resolved([ds.train[0].path])))}

@pytest.fixture(scope='module')
def fitted(ds, tmp_path_factory):
    "Each case fitted once, saved and loaded back (what `anomaly-fastai export --model DIR` exports)."
    torch.set_num_threads(2)
    dets = {}
    for name, case in CASES.items():
        if case is None: continue
        method, kw = case
        d = tmp_path_factory.mktemp('models')/name
        save_detector(DETECTORS[method](device='cpu', **kw).fit(ds, progress=False), d)
        dets[name] = (d, load_detector(d, device='cpu'))
    twin = load_detector(dets['twin'][0], device='cpu')  # the same model, scored by Mahalanobis distance
    twin.scorers = [get_scorer('mahalanobis').fit(s.train_emb) for s in twin.scorers]
    twin.norms, twin.params['score'] = [MinMax().fit(s.loo_scores()) for s in twin.scorers], 'mahalanobis'
    good = twin._loo_scores()
    twin.norm, twin.threshold = MinMax().fit(good), float(torch.quantile(good, 0.99))
    d = save_detector(twin, tmp_path_factory.mktemp('models')/'twin-mahalanobis')
    dets['twin-mahalanobis'] = (d, load_detector(d, device='cpu'))
    return dets

@pytest.fixture(scope='module')
def exported(fitted, tmp_path_factory):
    out = tmp_path_factory.mktemp('exported')
    return {(name, fmt): export_model(d, fmt, out/f'{name}.{"onnx" if fmt == "onnx" else "pt"}')
            for name, (d, _) in fitted.items() for fmt in ('onnx', 'torchscript')}

_REFS = {}

def _reference(name, det, xb):
    "The library's scores and maps of `xb`, its normalised scores (`Detector.normalize`, as `predict` reports them) and decisions; computed once per model."
    if name not in _REFS:
        r = det.score(xb)
        near = r['nearest'].numpy() if r['nearest'] is not None else np.full(len(xb), -1)
        _REFS[name] = (r['scores'].numpy(), r['maps'].detach().numpy(), det.normalize(r['scores']).numpy(), det.flags(r['scores']).numpy(), near)
    return _REFS[name]

def _runner(f, fmt):
    "Load `f` once; a function batch -> outputs (numpy)."
    if fmt == 'onnx':
        s = ort.InferenceSession(str(f), providers=['CPUExecutionProvider'])
        return lambda xb: s.run(list(OUTPUTS), {'x': xb.numpy()})
    m, _ = load_torchscript(f)
    def run(xb):
        with torch.no_grad(): return [t.numpy() for t in m(xb)]
    return run

@pytest.mark.parametrize('fmt', ['onnx', 'torchscript'])
@pytest.mark.parametrize('name', list(CASES))
def test_parity(name, fmt, fitted, exported, x):
    _, det = fitted[name]
    xb = x['96' if name.endswith('-96') else '64']
    ref_s, ref_m, ref_n, ref_flag, ref_near = _reference(name, det, xb)
    spread = det.norm.max - det.norm.min if det.norm.max > det.norm.min else 1.
    run = _runner(exported[name, fmt], fmt)
    for bs in (1, len(xb)):  # dynamic batch: one image at a time (the first three), then all 25 at once
        outs = [run(xb[i:i + bs]) for i in range(0, len(xb) if bs > 1 else 3, bs)]
        s, n, m, flag, near = (np.concatenate(o) for o in zip(*outs))
        k = len(s)
        err = np.abs(s - ref_s[:k]).max()
        assert err <= 1e-4 * max(1., np.abs(ref_s).max()), f'{name} {fmt} bs {bs}: scores differ by {err} (max |score| {np.abs(ref_s).max()})'
        err = np.abs(m - ref_m[:k]).max()
        assert err <= 1e-4 * max(1., np.abs(ref_m).max()), f'{name} {fmt} bs {bs}: maps differ by {err} (max |map| {np.abs(ref_m).max()})'
        assert flag.tolist() == ref_flag[:k].tolist(), f'{name} {fmt} bs {bs}: decisions differ'
        np.testing.assert_allclose(n, ref_n[:k], rtol=0, atol=1e-4 + 1e-4 * max(1., np.abs(ref_s).max()) / spread)
        assert m.shape == (k, *xb.shape[-2:]) and n.dtype == np.float64 and flag.dtype == bool
        assert near.tolist() == ref_near[:k].tolist(), f'{name} {fmt} bs {bs}: nearest good images differ'

def test_onnx_file_contents(fitted, exported):
    _, det = fitted['patchcore']
    model = onnx.load(str(exported['patchcore', 'onnx']))
    assert model.opset_import[0].version == OPSET
    meta = json.loads({p.key: p.value for p in model.metadata_props}[META_KEY])
    assert (meta['method'], meta['backbone'], meta['threshold'], meta['preprocess']) == ('patchcore', 'mobilenet_v2', det.threshold, det.pre.to_dict())
    assert meta['norm'] == det.norm.to_dict() and meta['library_version'] == anomaly_fastai.__version__
    assert [i.type.tensor_type.shape.dim[0].dim_param for i in model.graph.input] == ['batch']
    bank = next(i for i in model.graph.initializer if tuple(i.dims) == tuple(det.memory.bank.shape))
    assert bank.data_type == onnx.TensorProto.FLOAT16  # the saved float16 bank stays float16 in the file
    _, meta_ts = load_torchscript(exported['patchcore', 'torchscript'])
    assert meta_ts == meta

@pytest.mark.parametrize('head', [torch.nn.Linear(8, 2), L2Softmax(8, 2), CosineHead(8, 2), CenterHead(8, 2)])
def test_head_gradient_is_autograd(head):
    "The forward-only twin map rests on this closed-form gradient of the anomaly logit at the embedding."
    torch.nn.init.normal_(head.weight)
    e = torch.randn(5, 8, requires_grad=True)
    g, = torch.autograd.grad(head(e)[:, 1].sum(), e)
    torch.testing.assert_close(head_gradient(head, e.detach()), g, rtol=1e-5, atol=1e-6)

def test_runtime_preprocessing_is_the_library(ds, tmp_path):
    "The runtime's numpy preprocessing gives exactly Preprocess.image (difference 0): same Pillow resize, same padding."
    from PIL import Image
    paths = [s.path for s in ds.test[::5]]
    for i, (w, h) in enumerate([(300, 120), (90, 200)]):
        Image.open(paths[0]).convert('RGB').resize((w, h)).save(tmp_path/f'{i}.png'); paths.append(tmp_path/f'{i}.png')
    Image.fromarray(np.linspace(0, 65535, 4096).reshape(64, 64).astype(np.uint16)).save(tmp_path/'g16.png'); paths.append(tmp_path/'g16.png')
    for pre in (Preprocess(96).resolved(paths[:1]), Preprocess(64, mode='squash'), Preprocess(96, 64, 'crop'), Preprocess(64, height=64, width=128)):
        g = runtime.Geometry.from_dict(pre.to_dict())
        for p in paths: assert np.array_equal(g.image(p), pre.image(p).numpy()), (pre, p)
        m = torch.rand(*pre.input_size) * 10
        for size in ((300, 120), (90, 200), (1000, 999)):
            assert np.abs(g.unmap(m.numpy(), size) - pre.unmap(m, size).numpy()).max() < 1e-5 * 10

BLOCKER = runtime.BLOCKING_PRELUDE

@pytest.mark.parametrize('name', ['knn', 'tiled-knn-96', 'flow', 'autoencoder-l2-gray'])
def test_runtime_without_torch(name, ds, fitted, exported, tmp_path):
    "In a process where torch, torchvision, fastai and timm cannot be imported, the runtime loads the file and scores like the library."
    _, det = fitted[name]
    paths = [str(s.path) for s in ds.test[::6]]
    script = BLOCKER + f"""
import json
import anomaly_fastai
from anomaly_fastai import runtime
rs = runtime.load({str(exported[name, 'onnx'])!r}).predict({paths!r}, bs=3)
print(json.dumps(dict(scores=[r['score'] for r in rs], labels=[r['label'] for r in rs], map_shapes=[list(r['map'].shape) for r in rs],
                      blocked=[m for m in ('torch', 'fastai', 'torchvision', 'timm') if m in sys.modules])))
"""
    r = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.splitlines()[-1])
    assert res['blocked'] == []
    ref = list(score_images(det, paths, bs=3, progress=False))
    np.testing.assert_allclose(res['scores'], [q['score'] for q in ref], rtol=1e-4, atol=1e-4)
    assert res['labels'] == [q['label'] for q in ref]
    assert res['map_shapes'] == [list(q['map'].shape) for q in ref]

def test_runtime_cli(exported, ds, tmp_path):
    f = str(exported['knn', 'onnx'])
    script = BLOCKER + f"from anomaly_fastai import runtime; runtime.main({['--model', f, '--out', str(tmp_path/'p'), str(ds.root/'test'/'contamination')]!r})"
    r = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = (tmp_path/'p'/'predictions.csv').read_text().splitlines()
    assert rows[0] == 'path,score,norm_score,label,nearest_good,heatmap,error' and len(rows) == 1 + len(list((ds.root/'test'/'contamination').iterdir()))
    assert len(list((tmp_path/'p'/'heatmaps').rglob('*.png'))) == len(rows) - 1
    r = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)   # again: the output exists
    assert r.returncode == 2 and '--force' in r.stderr and 'Traceback' not in r.stderr
    script = f"from anomaly_fastai import runtime; runtime.main(['--model', {str(tmp_path/'none.onnx')!r}, '--out', {str(tmp_path/'q')!r}, 'x.png'])"
    r = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)
    assert r.returncode == 2 and 'none.onnx' in r.stderr and 'Traceback' not in r.stderr

def test_export_errors(fitted, exported, tmp_path):
    d, det = fitted['knn']
    with pytest.raises(FileExistsError, match='pass force=True'): export_model(d, 'onnx', exported['knn', 'onnx'])
    with pytest.raises(ValueError, match='format must be one of'): export_model(d, 'tflite', tmp_path/'m')
    with pytest.raises(FileNotFoundError, match='expected a model directory'): export_model(tmp_path/'nothing', 'onnx', tmp_path/'m.onnx')
    with pytest.raises(RuntimeError, match='not fitted'): export_model(DETECTORS['knn'](pre=SIZE, device='cpu'), 'onnx', tmp_path/'m.onnx')
