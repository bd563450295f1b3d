"End-to-end runs of the `anomaly-fastai` console script in a fresh process, as a user types them."
import csv, json, shutil, subprocess, sys
from pathlib import Path
import pytest
from anomaly_fastai.data import sample_path

def run(*args, ok=True):
    r = subprocess.run([str(Path(sys.executable).parent/'anomaly-fastai'), *map(str, args)], capture_output=True)
    r.stdout, r.stderr = r.stdout.decode(), r.stderr.decode()  # not text=True: its newline translation would hide a '\r'
    if ok: assert r.returncode == 0, r.stderr
    return r

@pytest.fixture(scope='module')
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp('cli')/'model'
    assert run('fit', '--method', 'knn', '--out', d, '--quiet').stdout == ''
    assert (d/'config.json').is_file() and (d/'state.pt').is_file()
    return d

def _table_only(stdout: str) -> bool:
    "Whether `stdout` is a results table alone: header, rule, rows, rule, Mean."
    lines = stdout.splitlines()
    return lines[0].split()[:3] == ['category', 'method', 'backbone'] and lines[-1].startswith('Mean') and len(lines) >= 5

def test_bench_prints_table_and_writes_heatmaps(tmp_path):
    """In a log (stdout is a pipe here): one plain line per stage, no `\\r` bars; --quiet: the table only; --save-models keeps
    the fitted model, replaced only with --force."""
    r = run('bench', '--method', 'knn', '--out', tmp_path/'b', '--heatmaps', '2', '--save-models', tmp_path/'models')
    assert 'image_auroc' in r.stdout and 'Mean' in r.stdout
    assert (tmp_path/'b'/'results.csv').is_file() and (tmp_path/'b'/'results.md').is_file()
    assert len(list((tmp_path/'b'/'heatmaps'/'bottle').rglob('*.png'))) == 2
    assert (tmp_path/'b'/'report.html').is_file() and 'report.html' in r.stdout
    assert '\r' not in r.stdout + r.stderr and 'bottle: fitting knn (mobilenet_v2)\nbottle: testing\n' in r.stdout
    assert (tmp_path/'models'/'bottle'/'config.json').is_file() and f'model saved in {tmp_path/"models"/"bottle"}' in r.stdout
    r = run('bench', '--method', 'knn', '--out', tmp_path/'b2', '--save-models', tmp_path/'models', ok=False)
    assert r.returncode == 2 and 'bottle (--save-models): a model directory already exists here; pass --force' in r.stderr
    assert not (tmp_path/'b2').exists()  # refused before the fit
    before = (tmp_path/'models'/'bottle'/'state.pt').stat().st_mtime_ns
    r = run('bench', '--method', 'knn', '--out', tmp_path/'b', '--force', '--quiet', '--save-models', tmp_path/'models')
    assert _table_only(r.stdout) and '\r' not in r.stderr, r.stdout
    assert (tmp_path/'models'/'bottle'/'state.pt').stat().st_mtime_ns != before  # replaced with --force
    r = run('test', '--model', tmp_path/'models'/'bottle', '--out', tmp_path/'t', '--heatmaps', '0', '--quiet')
    assert _table_only(r.stdout), r.stdout

def test_test_and_predict_in_fresh_processes(model, tmp_path):
    run('test', '--model', model, '--out', tmp_path/'t', '--heatmaps', '1')
    rows = list(csv.DictReader(open(tmp_path/'t'/'results.csv')))
    assert float(rows[0]['image_auroc']) > 0.9 and (tmp_path/'t'/'report.html').is_file()
    run('predict', '--model', model, '--out', tmp_path/'p', sample_path()/'bottle'/'test'/'good', sample_path()/'bottle'/'test'/'broken_large'/'000.jpg')
    rows = list(csv.DictReader(open(tmp_path/'p'/'predictions.csv')))
    assert len(rows) == 11 and all(r['nearest_good'] for r in rows)
    assert len(list((tmp_path/'p'/'heatmaps').rglob('*.png'))) == 11  # good/000.jpg and broken_large/000.jpg both kept
    assert all((tmp_path/'p'/r['heatmap']).is_file() for r in rows)

def test_nothing_overwritten_without_force(model, tmp_path):
    out = tmp_path/'p'; out.mkdir(); (out/'keep.txt').write_text('mine')
    r = run('predict', '--model', model, '--out', out, sample_path()/'bottle'/'test'/'good', ok=False)
    assert r.returncode == 2 and '--force' in r.stderr and (out/'keep.txt').read_text() == 'mine'
    assert run('predict', '--model', model, '--out', out, '--force', '--quiet', sample_path()/'bottle'/'test'/'good').stdout == ''

@pytest.mark.parametrize('args, expect', [
    (('fit', '--method', 'knn', '--data', 'no/such/root', '--category', 'bottle', '--out', '{tmp}/m'), 'no/such/root: expected a dataset'),
    (('fit', '--method', 'knn', '--bs', '0', '--out', '{tmp}/m'), "argument --bs: expected an integer >= 1, found '0'"),
    (('test', '--model', '{tmp}/missing', '--out', '{tmp}/t'), 'expected a model directory'),
    (('predict', '--model', '{model}', '--out', '{tmp}/p', 'nothing.png'), 'nothing.png'),
    (('fit', '--method', 'nope', '--out', '{tmp}/m'), "unknown method 'nope'"),
    (('fit', '--method', 'knn', '--head', 'arcface', '--out', '{tmp}/m'), '--head does not apply to --method knn'),
    (('fit', '--method', 'twin', '--score', 'forest', '--out', '{tmp}/m'), "unknown scorer 'forest'"),
    (('fit', '--method', 'knn', '--val', 'no/such/val', '--out', '{tmp}/m'), 'no/such/val'),
    (('fit', '--method', 'knn', '--crop', '200', '--out', '{tmp}/m'), '--crop applies only with --geometry crop'),
    (('fit', '--method', 'knn', '--geometry', 'letterbox', '--out', '{tmp}/m'), "invalid choice: 'letterbox'"),
    (('fit', '--method', 'knn', '--scales', '1,0', '--out', '{tmp}/m'), 'argument --scales: scales must be one or more numbers in (0, 2]'),
    (('fit', '--method', 'patchcore', '--coreset', '0', '--out', '{tmp}/m'), 'argument --coreset: coreset must be in (0, 1]'),
    (('fit', '--method', 'patchcore', '--scales', '1,0.5', '--out', '{tmp}/m'), '--scales does not apply to --method patchcore'),
])
def test_user_errors_are_one_line(model, tmp_path, args, expect):
    r = run(*[a.format(tmp=tmp_path, model=model) for a in args], ok=False)
    assert r.returncode == 2, r.stderr
    assert expect in r.stderr and 'Traceback' not in r.stderr

def test_multiscale_knn(tmp_path):
    "--scales reaches the model: saved in its config, and a saved model predicts with it in a fresh process."
    run('fit', '--method', 'knn', '--scales', '1, 0.5', '--size', '128', '--out', tmp_path/'m')
    assert json.load(open(tmp_path/'m'/'config.json'))['params']['scales'] == [1., 0.5]
    run('predict', '--model', tmp_path/'m', '--out', tmp_path/'p', '--no-heatmaps', sample_path()/'bottle'/'test'/'contamination')
    assert len(list(csv.DictReader(open(tmp_path/'p'/'predictions.csv')))) == 5

def test_twin_method_end_to_end(tmp_path):
    "--method twin with its options: a tiny fit (small crops, one epoch), then test and predict in fresh processes."
    run('fit', '--method', 'twin', '--head', 'cosface', '--twin', 'line,cutpaste', '--epochs', '1', '--ensemble', '1',
        '--score', 'knn', '--size', '128', '--seed', '1', '--no-freeze-bn', '--out', tmp_path/'m')
    assert json.load(open(tmp_path/'m'/'config.json'))['params']['freeze_bn'] is False  # BatchNorm left to adapt, as asked
    run('test', '--model', tmp_path/'m', '--out', tmp_path/'t', '--heatmaps', '1')
    row = next(csv.DictReader(open(tmp_path/'t'/'results.csv')))
    assert row['method'] == 'twin' and 0 <= float(row['image_auroc']) <= 1 and row['pixel_auroc']
    run('predict', '--model', tmp_path/'m', '--out', tmp_path/'p', sample_path()/'bottle'/'test'/'contamination')
    assert len(list(csv.DictReader(open(tmp_path/'p'/'predictions.csv')))) == 5

@pytest.mark.data
def test_bench_on_full_bottle(shared_data, tmp_path):
    "The issue's benchmark command on the full MVTec AD bottle category (209 train, 83 test images)."
    r = run('bench', '--data', shared_data/'mvtec_ad', '--category', 'bottle', '--method', 'knn', '--backbone', 'mobilenet_v2', '--out', tmp_path)
    rows = list(csv.DictReader(open(tmp_path/'results.csv')))
    assert float(rows[0]['image_auroc']) > 0.95 and float(rows[0]['pixel_auroc']) > 0.9, r.stdout

def test_heatmaps_never_collide(tmp_path):
    "Two defect folders holding the same file names: one heatmap per test image, each under its own path."
    data = tmp_path/'part'
    shutil.copytree(sample_path()/'bottle'/'train'/'good', data/'good')
    for kind in ('scratch', 'dent'): shutil.copytree(sample_path()/'bottle'/'test'/'broken_small', data/kind)
    r = run('bench', '--method', 'knn', '--data', data, '--out', tmp_path/'b', '--heatmaps', '100', '--size', '128')
    n_test = 60 // 5 + 2 * 5  # every 5th good image is held out, and both defect folders
    files = sorted((tmp_path/'b'/'heatmaps').rglob('*.png'))
    assert len(files) == n_test and f'{n_test} heatmaps' in r.stdout, r.stdout
    assert {f.parent.name for f in files} == {'good', 'scratch', 'dent'}

def test_tiled_fit_test_predict(tmp_path):
    "--tile wraps the method: 128 px tiles of the 256 px sample images, at their own resolution."
    run('fit', '--method', 'knn', '--tile', '128', '--overlap', '0', '--out', tmp_path/'m')
    r = run('test', '--model', tmp_path/'m', '--out', tmp_path/'t', '--heatmaps', '3')
    row = next(csv.DictReader(open(tmp_path/'t'/'results.csv')))
    assert row['method'] == 'knn, 128 px tiles' and float(row['image_auroc']) > 0.8, r.stdout
    assert len(list((tmp_path/'t'/'heatmaps').rglob('*.png'))) == 3
    run('predict', '--model', tmp_path/'m', '--out', tmp_path/'p', sample_path()/'bottle'/'test'/'broken_small')
    assert len(list(csv.DictReader(open(tmp_path/'p'/'predictions.csv')))) == 5
    r = run('fit', '--method', 'knn', '--tile', '512', '--out', tmp_path/'m2', ok=False)
    assert r.returncode == 2 and 'larger than the images' in r.stderr

def test_export_then_predict_with_the_onnx_file(model, tmp_path):
    "`export` writes one .onnx file; `predict --model FILE.onnx` scores through the runtime like `predict` with the model folder."
    r = run('export', '--model', model, '--out', tmp_path/'m.onnx')
    assert (tmp_path/'m.onnx').is_file() and 'exported' in r.stdout
    r = run('export', '--model', model, '--out', tmp_path/'m.onnx', ok=False)
    assert r.returncode == 2 and '--force' in r.stderr.replace('force=True', '--force') and 'Traceback' not in r.stderr
    imgs = sample_path()/'bottle'/'test'/'broken_large'
    r = run('predict', '--model', model, '--out', tmp_path/'lib', imgs)
    assert r.stdout.startswith('engine: '), r.stdout  # says first which engine scores
    r = run('predict', '--model', tmp_path/'m.onnx', '--out', tmp_path/'onnx', imgs)
    assert r.stdout.startswith(f'engine: onnxruntime ({tmp_path/"m.onnx"})'), r.stdout
    # one writer: the same columns, nearest good image, labels and run record for both
    assert (tmp_path/'lib'/'predictions.csv').read_text().splitlines()[0] == (tmp_path/'onnx'/'predictions.csv').read_text().splitlines()[0]
    assert (tmp_path/'lib'/'predict.json').is_file() and (tmp_path/'onnx'/'predict.json').is_file()
    lib = {r['path']: r for r in csv.DictReader(open(tmp_path/'lib'/'predictions.csv'))}
    onnx = {r['path']: r for r in csv.DictReader(open(tmp_path/'onnx'/'predictions.csv'))}
    assert lib.keys() == onnx.keys() and len(lib) == 5
    for p, r in lib.items():
        assert abs(float(r['score']) - float(onnx[p]['score'])) <= 1e-5 * max(1, abs(float(r['score']))) and r['label'] == onnx[p]['label']
        assert r['nearest_good'] and r['nearest_good'] == onnx[p]['nearest_good'] and r['heatmap'] == onnx[p]['heatmap']
    f = tmp_path/'onnx'/'predictions.csv'; full = f.read_text()
    f.write_text('\n'.join(full.splitlines()[:3]) + '\n')  # interrupted after 2 images: --resume works with the .onnx file too
    r = run('predict', '--model', tmp_path/'m.onnx', '--out', tmp_path/'onnx', '--resume', imgs)
    assert 'resuming: 2 of 5' in r.stdout + r.stderr and f.read_text() == full, r.stdout + r.stderr

def test_model_folder_predicts_from_its_cached_export_without_torch(tmp_path):
    "`predict --model DIR` exports the model once (`engine-cache.onnx` in the folder); later runs score from it, torch never imported, same numbers."
    from anomaly_fastai.runtime import BLOCKING_PRELUDE, CACHE_FILE
    m, imgs = tmp_path/'m', sample_path()/'bottle'/'test'/'contamination'
    run('fit', '--method', 'knn', '--size', '128', '--out', m)
    run('predict', '--model', m, '--out', tmp_path/'p1', imgs)
    assert (m/CACHE_FILE).is_file()
    script = BLOCKING_PRELUDE + (f"from anomaly_fastai.cli import main; main({['predict', '--model', str(m), '--out', str(tmp_path/'p2'), str(imgs)]!r})\n"
                                 "print('imported:', [k for k in ('torch', 'torchvision', 'fastai', 'timm') if k in sys.modules])")
    r = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'engine: onnxruntime (cached export' in r.stdout and "imported: []" in r.stdout, r.stdout
    assert (tmp_path/'p1'/'predictions.csv').read_text() == (tmp_path/'p2'/'predictions.csv').read_text()
    run('fit', '--method', 'knn', '--size', '128', '--k', '3', '--out', m, '--force')   # a new model in the same folder: the old export is not used
    r = run('predict', '--model', m, '--out', tmp_path/'p3', imgs)
    assert json.load(open(m/'config.json'))['params']['k'] == 3 and (m/CACHE_FILE).is_file()
    assert (tmp_path/'p3'/'predictions.csv').read_text() != (tmp_path/'p1'/'predictions.csv').read_text()  # scored by the new model
    r = subprocess.run([sys.executable, '-c', script.replace(str(tmp_path/'p2'), str(tmp_path/'p4'))], capture_output=True, text=True)
    assert r.returncode == 0 and "imported: []" in r.stdout, r.stderr  # the re-made cache serves torch-free again
    assert (tmp_path/'p3'/'predictions.csv').read_text() == (tmp_path/'p4'/'predictions.csv').read_text()

def test_flow_with_labelled_defects(tmp_path):
    "--method flow --defects 1: one defect per type trains the flow; `test` on the same data leaves those images out again."
    run('fit', '--method', 'flow', '--defects', '1', '--epochs', '1', '--holdout', '0.2', '--size', '128', '--out', tmp_path/'m')
    cfg = json.load(open(tmp_path/'m'/'config.json'))
    assert cfg['params']['holdout'] == 0.2 and cfg['threshold_rule']['n_good'] == 12, cfg  # a fifth of the sample's 60 good images
    r = run('test', '--model', tmp_path/'m', '--out', tmp_path/'t', '--heatmaps', '0')
    row = next(csv.DictReader(open(tmp_path/'t'/'results.csv')))
    assert row['method'] == 'flow (K=1)' and 0 <= float(row['image_auroc']) <= 1, r.stdout
    assert '22 test' in r.stdout, r.stdout  # the sample's 25 test images less the 3 trained on (one per defect type)
    r = run('fit', '--method', 'knn', '--defects', '1', '--out', tmp_path/'m2', ok=False)
    assert r.returncode == 2 and '--defects and --unseen-types apply to --method flow only' in r.stderr

def test_twin_features_under_patchcore(tmp_path):
    "--backbone twin:DIR: PatchCore on the body a twin model fine-tuned; the model keeps working, and exports, after the twin is gone."
    run('fit', '--method', 'twin', '--twin', 'realistic', '--distill', '1', '--lr-mult', '10', '--epochs', '1', '--size', '128',
        '--out', tmp_path/'twin')
    r = run('fit', '--method', 'patchcore', '--backbone', f'twin:{tmp_path/"twin"}', '--size', '128', '--out', tmp_path/'pc')
    assert f'twin:{tmp_path/"twin"}' in r.stdout
    shutil.rmtree(tmp_path/'twin')   # the tuned weights live inside the patchcore model
    run('test', '--model', tmp_path/'pc', '--out', tmp_path/'t', '--heatmaps', '0')
    row = next(csv.DictReader(open(tmp_path/'t'/'results.csv')))
    assert row['method'] == 'patchcore' and row['backbone'] == f'twin:{tmp_path/"twin"}' and 0.5 <= float(row['image_auroc']) <= 1
    run('export', '--model', tmp_path/'pc', '--out', tmp_path/'pc.onnx')
    imgs = sample_path()/'bottle'/'test'/'broken_small'
    run('predict', '--model', tmp_path/'pc', '--out', tmp_path/'lib', '--no-heatmaps', imgs)
    run('predict', '--model', tmp_path/'pc.onnx', '--out', tmp_path/'onnx', '--no-heatmaps', imgs)
    lib = {r['path']: float(r['score']) for r in csv.DictReader(open(tmp_path/'lib'/'predictions.csv'))}
    onnx = {r['path']: float(r['score']) for r in csv.DictReader(open(tmp_path/'onnx'/'predictions.csv'))}
    assert lib.keys() == onnx.keys() and all(abs(s - onnx[p]) <= 1e-4 * max(1, abs(s)) for p, s in lib.items())
    r = run('fit', '--method', 'knn', '--backbone', f'twin:{tmp_path/"twin"}', '--out', tmp_path/'m2', ok=False)
    assert r.returncode == 2 and 'does not exist' in r.stderr and 'Traceback' not in r.stderr
    # a script that imports only `load_detector` still loads a model of any method
    code = f'from anomaly_fastai.saving import load_detector; print(load_detector({str(tmp_path/"pc")!r}).method)'
    assert subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.split()[-1] == 'patchcore'
