"""Scoring speed (issue 31): every method from its limits to the whole process, MobileNetV2, in one run.

    .venv/bin/python bench/speed.py                      # every method, bottle and magnetic tile, 1000 images (a quiet machine: an hour or more)
    .venv/bin/python bench/speed.py --methods knn,padim --datasets bottle --n-images 1000
    .venv/bin/python bench/speed.py --quick              # a check of the script: knn on the embedded sample, 50 images (a minute or two)

Per dataset, the limits: the bare backbone (MobileNetV2 to its last map, normalisation inside) at the dataset's model input
size, in torch (channels-last, as the library runs it on a CPU) and in ONNX Runtime, images/s at batch 1 and 32.

Per dataset and method, each in its own process (one failing method gives an error row, the others go on):
- fit with the method's defaults (the trained methods with fewer epochs: `SETTINGS`; scoring cost does not depend on them),
  saved to a model folder and exported with `anomaly-fastai export` to FOLDER.onnx;
- the scoring module (`det.module`) on a batch of 32 preprocessed test images: torch eager (inference mode) and ONNX Runtime
  (`engine.onnx_session(det).run`), images/s;
- end to end, the whole process with its start-up: `anomaly-fastai predict --model FOLDER` and `--model FOLDER.onnx`, without
  and with heatmaps, alternated (FOLDER, .onnx, FOLDER, .onnx, ... `--repeats` times), on `--n-images` images (the dataset's
  test and training images repeated under new names, hard links in a temporary folder); CPU seconds from
  `getrusage(RUSAGE_CHILDREN)` deltas and wall seconds (the lowest CPU of the repeats is reported); the CPU ratio FOLDER / .onnx;
  whether the two CSVs agree (largest score difference, absolute and relative; labels that differ); before them, start-up on
  one image: FOLDER without its cached export (`engine-cache.onnx`: built then), FOLDER with it, and the .onnx file;
- `anomaly-fastai test --model FOLDER --data ...`, wall seconds;
- where the time goes: predict's steps measured in process one after the other (no reading ahead in threads) on
  `--breakdown-images` images with the engine `predict --model FOLDER` uses (`engine.load_engine`): decode (`runtime.open_image`),
  preprocess (`Geometry.image_from`), module (`Engine.run`, batches of 32), map unmapping (`Geometry.unmap`), heatmap PNG
  (`runtime.save_heatmap`), CSV row; milliseconds per image;
- the ratio end-to-end `predict --no-heatmaps` images/s over the module's own images/s (issue 31: at least 60 %, PatchCore and
  SPADE 50 %).
"""
import argparse, copy, csv, json, math, os, resource, shutil, statistics, subprocess, sys, tempfile, time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import DATASETS

METHODS = 'knn,patchcore,padim,spade,flow,autoencoder,twin'
# fits that would take more than a few minutes on 2 cores get fewer epochs (speed only: scoring does not depend on them)
SETTINGS = dict(twin=dict(epochs=1, epochs_frozen=0), flow=dict(epochs=1), autoencoder=dict(epochs=1))
TARGET = dict(patchcore=0.5, spade=0.5)   # issue 31: e2e predict --no-heatmaps / module images/s; 0.6 for the others
ALIASES = dict(mtd='magnetic_tile')
BS = 32

def cli_path() -> str:
    "The `anomaly-fastai` console script of this environment (the whole process, as a user runs it)."
    p = Path(sys.executable).parent/'anomaly-fastai'
    return str(p) if p.exists() else shutil.which('anomaly-fastai') or 'anomaly-fastai'

def commit() -> str:
    "`git rev-parse --short HEAD`, + '-dirty' when tracked files differ from it."
    try:
        h = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True, cwd=HERE, check=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], capture_output=True, text=True, cwd=HERE).stdout.strip()
        return h + ('-dirty' if dirty else '')
    except (OSError, subprocess.CalledProcessError): return 'unknown'

def rate(fn, x, bs, min_s=2.0, max_iter=20, min_iter=2):
    "Images/s of `fn` on a batch of `bs` taken from `x` (one warm-up call, then at least `min_s` s and `min_iter` calls, at most `max_iter`)."
    xb = x[[i % len(x) for i in range(bs)]]   # the first `bs` images, repeated when there are fewer (torch or numpy)
    fn(xb)
    n, t0 = 0, time.perf_counter()
    while n < max_iter and (time.perf_counter() - t0 < min_s or n < min_iter):
        fn(xb); n += 1
    return n * bs / (time.perf_counter() - t0)

def timed(cmd: list, env=None) -> dict:
    "Run `cmd` to its end: wall seconds, CPU seconds (user + system, its whole process tree), exit status, stderr tail."
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return dict(wall=wall, cpu=cpu, rc=p.returncode, err=(p.stderr or p.stdout)[-2000:])

def check(res: dict, what: str) -> dict:
    if res['rc']: raise RuntimeError(f'{what} failed (exit {res["rc"]}): {res["err"]}')
    return res

# -- data

def dataset_args(a, name: str) -> tuple:
    "(path, category) of dataset `name` as `load_dataset` and the CLI's --data/--category take them."
    if name == 'sample':
        from anomaly_fastai.data import sample_path
        return str(sample_path()), 'bottle'
    rel, cat = DATASETS[name]
    return str(Path(a.data)/rel), cat

def load(a, name: str):
    from anomaly_fastai.data import load_dataset
    ds = load_dataset(*dataset_args(a, name)); ds.name = name
    return ds

def image_folder(ds, n: int, root: Path) -> Path:
    """`n` image files: the test then training images of `ds`, repeated under new names (r<k>_<i>_<name>) as hard links
    (copies across file systems); predict drops paths that resolve to the same file, so symbolic links would not do."""
    src = [Path(s.path) for s in list(ds.test) + list(ds.train)]
    d = root/'images'; d.mkdir(parents=True)
    for j in range(n):
        p = src[j % len(src)]
        q = d/f'r{j // len(src)}_{j % len(src):05d}_{p.name}'
        try: os.link(p, q)
        except OSError: shutil.copyfile(p, q)
    return d

# -- the limits

def limits(a, name: str) -> dict:
    "The bare backbone at the dataset's input size: torch (channels-last) and ONNX Runtime, images/s at batch 1 and 32."
    import io, torch, numpy as np, onnxruntime as ort
    from anomaly_fastai.backbones import get_backbone
    from anomaly_fastai.data import Preprocess
    torch.set_num_threads(a.threads)
    ds = load(a, name)
    H, W = Preprocess().resolved([str(s.path) for s in ds.train]).input_size
    x = torch.rand(BS, 3, H, W, generator=torch.Generator().manual_seed(0))
    model = get_backbone('mobilenet_v2').model.eval()
    row = dict(category=name, input=f'{H}x{W}')
    def torch_plain(xb):
        with torch.inference_mode(): return model(xb)
    for bs in (1, BS): row[f'backbone torch plain bs{bs} img/s'] = rate(torch_plain, x, bs, **a.rate_kw)
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    def torch_run(xb):
        with torch.inference_mode(): return cl(xb.contiguous(memory_format=torch.channels_last))
    f = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (x[:2],), f, dynamo=False, opset_version=17, input_names=['x'], output_names=['y'],
                          dynamic_axes={'x': {0: 'b'}, 'y': {0: 'b'}})
    so = ort.SessionOptions(); so.intra_op_num_threads = a.threads
    sess = ort.InferenceSession(f.getvalue(), so, providers=['CPUExecutionProvider'])
    xn = x.numpy()
    for bs in (1, BS):
        row[f'backbone torch bs{bs} img/s'] = rate(torch_run, x, bs, **a.rate_kw)
        row[f'backbone ort bs{bs} img/s'] = rate(lambda xb: sess.run(None, {'x': xb}), xn, bs, **a.rate_kw)
    return row

# -- one method

def breakdown(a, model_dir: Path, files: list, out: Path) -> dict:
    "predict's steps, one after the other in this process, with the engine `predict --model model_dir` uses: ms per image."
    import numpy as np
    from anomaly_fastai import engine
    from anomaly_fastai.runtime import eval_size, open_image, save_heatmap
    eng = engine.load_engine(model_dir, threads=a.threads)
    what = engine.describe(eng) if hasattr(engine, 'describe') else f'{eng.name} ({getattr(eng, "path", "")})'
    lo, hi = eng.map_range or (None, None)
    t = defaultdict(float)
    out.mkdir(parents=True, exist_ok=True)
    with open(out/'predictions.csv', 'w', newline='') as fh:
        w = csv.writer(fh)
        for b in range(0, len(files), BS):
            batch, xs, sizes = files[b:b + BS], [], []
            for p in batch:
                t0 = time.perf_counter(); im = open_image(p)
                t1 = time.perf_counter(); xs.append(eng.geometry.image_from(im)); sizes.append(im.size)
                t['decode'] += t1 - t0; t['preprocess'] += time.perf_counter() - t1
            t0 = time.perf_counter(); r = eng.run(np.stack(xs)); t['module'] += time.perf_counter() - t0
            for i, p in enumerate(batch):
                t0 = time.perf_counter(); m = eng.geometry.unmap(r['map'][i], eval_size(sizes[i], 1024))
                t1 = time.perf_counter(); save_heatmap(out/f'{b + i}.png', p, m, lo, hi)
                t2 = time.perf_counter()
                w.writerow([str(p), f'{float(r["score"][i]):.6g}', f'{float(r["norm_score"][i]):.6g}',
                            'anomaly' if r['anomalous'][i] else 'good', '', f'{b + i}.png', ''])
                t['unmap'] += t1 - t0; t['heatmap'] += t2 - t1; t['csv'] += time.perf_counter() - t2
    n = len(files)
    ms = {f'{k} ms/img': 1000 * t[k] / n for k in ('decode', 'preprocess', 'module', 'unmap', 'heatmap', 'csv')}
    plain = sum(ms[f'{k} ms/img'] for k in ('decode', 'preprocess', 'module', 'csv'))
    return dict(ms, **{'breakdown images': n, 'breakdown engine': what,
                       'sequential no-heatmaps img/s': 1000 / plain,
                       'sequential heatmaps img/s': 1000 / (plain + ms['unmap ms/img'] + ms['heatmap ms/img'])})

def read_csv(path: Path) -> dict:
    with open(path, newline='') as f: return {r['path']: r for r in csv.DictReader(f)}

def agreement(a_csv: Path, b_csv: Path) -> dict:
    "How two predictions.csv agree: images in both, largest score difference (absolute, relative), labels that differ."
    ra, rb = read_csv(a_csv), read_csv(b_csv)
    both = [p for p in ra if p in rb and ra[p]['score'] and rb[p]['score']]
    d = [abs(float(ra[p]['score']) - float(rb[p]['score'])) for p in both]
    scale = max((abs(float(ra[p]['score'])) for p in both), default=float('nan'))
    # relative to the largest score, not to each one: training images among the inputs score about 0 (they are in the bank)
    return {'csv rows compared': len(both), 'csv rows in one only': len(set(ra) ^ set(rb)),
            'max |score diff|': max(d, default=float('nan')), 'max |score diff| / max |score|': max(d, default=float('nan')) / scale,
            'labels differ': sum(ra[p]['label'] != rb[p]['label'] for p in both)}

class Stages:
    "Run the stages of one method; a failing stage is named in the row's `error` and the next ones go on (those that need it are skipped)."
    def __init__(self, row: dict): self.row, self.errors, self.failed = row, [], set()
    def __call__(self, name: str, fn, needs=()):
        if missing := [n for n in needs if n in self.failed]:
            self.failed.add(name); return None
        try: return fn()
        except Exception as e:
            self.failed.add(name)
            self.errors.append(f'{name}: {type(e).__name__}: {" ".join(str(e).split())[-300:]}')
            self.row['error'] = '; '.join(self.errors)
            print(f'[{self.row["category"]} {self.row["method"]}] {name} failed: {e}', file=sys.stderr, flush=True)

def one_method(a, name: str, method: str) -> dict:
    import torch
    from anomaly_fastai.data import Preprocess
    from anomaly_fastai.detector import all_methods
    from anomaly_fastai.saving import load_detector, save_detector
    from anomaly_fastai import engine
    torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp(prefix=f'speed-{method}-'))
    try:
        ds = load(a, name)
        settings = SETTINGS.get(method, {})
        row = dict(category=name, method=method, settings=' '.join(f'{k}={v}' for k, v in settings.items()) or 'defaults')
        say = lambda s: print(f'[{name} {method}] {s}', flush=True)
        stage, exe = Stages(row), cli_path()
        det = all_methods()[method](pre=Preprocess(), device='cpu', **settings).fit(ds, progress=False)
        row['fit s'] = det.fit_seconds
        model_dir, onnx_file = tmp/'model', tmp/'model.onnx'
        save_detector(det, model_dir)
        det = load_detector(model_dir, device='cpu')
        H, W = det.pre.input_size
        row['input'] = f'{H}x{W}'
        say(f'fitted in {det.fit_seconds:.1f} s')
        def export():
            r = check(timed([exe, 'export', '--model', model_dir, '--out', onnx_file]), 'anomaly-fastai export')
            row['export s'] = r['wall']; say(f'exported in {r["wall"]:.1f} s')
        stage('export', export)

        # the module on preprocessed tensors
        x = torch.stack([det.pre.image(s.path) for s in ds.test[:BS]])
        def eager(xb):
            with torch.inference_mode(): return det.module(xb)
        def module_torch():
            row['module torch img/s'] = rate(eager, x, BS, **a.rate_kw); say(f'module torch: {row["module torch img/s"]:.1f} img/s')
        def module_ort():
            sess = engine.onnx_session(det, threads=a.threads)
            row['module ort img/s'] = rate(sess.run, x.numpy(), BS, **a.rate_kw); say(f'module ORT: {row["module ort img/s"]:.1f} img/s')
        stage('module torch', module_torch)
        stage('module ort', module_ort)

        # end to end
        images = image_folder(ds, a.n_images, tmp)
        files = sorted(images.iterdir())
        row['images'] = len(files)
        def predict(model, out, heatmaps, inputs=(images,)):
            return timed([exe, 'predict', '--model', model, '--out', out, *([] if heatmaps else ['--no-heatmaps']), *inputs])
        cache = model_dir/'engine-cache.onnx'
        cache.unlink(missing_ok=True)
        kinds = dict(dir=model_dir, onnx=onnx_file)
        def startup(key, model):
            r = check(predict(model, tmp/'o1', False, [files[0]]), f'predict --model {model} (1 image)')
            shutil.rmtree(tmp/'o1', ignore_errors=True)
            row[f'1-image {key} cpu s'], row[f'1-image {key} wall s'] = r['cpu'], r['wall']
        for key, kind in (('dir uncached', 'dir'), ('dir cached', 'dir'), ('onnx', 'onnx')):
            stage(f'1-image {key}', lambda: startup(key, kinds[kind]), needs=('export',) if kind == 'onnx' else ())
            shutil.rmtree(tmp/'o1', ignore_errors=True)
        row['engine cache written'] = cache.is_file()
        runs = defaultdict(list)
        def one_predict(kind, heatmaps, o):
            r = check(predict(kinds[kind], o, heatmaps), f'predict --model {kinds[kind]}{"" if heatmaps else " --no-heatmaps"}')
            runs[kind, heatmaps].append(r)
            say(f'predict {kind} {"heatmaps" if heatmaps else "no-heatmaps"}: {r["cpu"]:.1f} CPU s, {r["wall"]:.1f} s wall')
        for rep in range(a.repeats):
            for heatmaps in (False, True):
                for kind in kinds:
                    o = tmp/f'{kind}-{int(heatmaps)}'
                    shutil.rmtree(o, ignore_errors=True)
                    stage(f'predict {kind}{" heatmaps" if heatmaps else ""}', lambda: one_predict(kind, heatmaps, o),
                          needs=('export',) if kind == 'onnx' else ())
                    if heatmaps or rep < a.repeats - 1: shutil.rmtree(o, ignore_errors=True)
        for (kind, heatmaps), rs in runs.items():
            best = min(rs, key=lambda r: r['cpu'])
            tag = f'{kind} {"heatmaps" if heatmaps else "no-heatmaps"}'
            row[f'{tag} cpu s'], row[f'{tag} wall s'] = best['cpu'], best['wall']
            row[f'{tag} img/s'] = len(files) / best['wall']
        for h in ('no-heatmaps', 'heatmaps'):
            if f'dir {h} cpu s' in row and f'onnx {h} cpu s' in row:
                row[f'cpu ratio dir/onnx {h}'] = row[f'dir {h} cpu s'] / row[f'onnx {h} cpu s']
        if runs.get(('dir', False)) and runs.get(('onnx', False)):
            stage('csv agreement', lambda: row.update(agreement(tmp/'dir-0'/'predictions.csv', tmp/'onnx-0'/'predictions.csv')))
        for k in ('torch', 'ort'):
            if f'module {k} img/s' in row and 'dir no-heatmaps img/s' in row:
                row[f'e2e/module {k}'] = row['dir no-heatmaps img/s'] / row[f'module {k} img/s']
        row['target'] = TARGET.get(method, 0.6)

        # test, and where the time goes
        data, cat = dataset_args(a, name)
        def test():
            r = check(timed([exe, 'test', '--model', model_dir, '--data', data, *(['--category', cat] if cat else []), '--out', tmp/'test']),
                      'anomaly-fastai test')
            row['test wall s'], row['test cpu s'], row['test images'] = r['wall'], r['cpu'], len(ds.test)
            say(f'test: {r["wall"]:.1f} s')
        stage('test', test)
        stage('breakdown', lambda: row.update(breakdown(a, model_dir, files[:a.breakdown_images], tmp/'breakdown')))
        return row
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

# -- the parent

def run_one(a, job: dict, argv_common: list) -> dict:
    "Run one job in a fresh process: the row it printed, or an error row naming why it failed."
    cmd = [sys.executable, __file__, *argv_common, '--one', json.dumps(job)]
    with tempfile.TemporaryFile('w+') as err:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        rows = []
        for line in p.stdout:
            if line.startswith('ROW '): rows.append(json.loads(line[4:]))
            else: print(line, end='', flush=True)
        p.wait()
        err.seek(0); tail = err.read()[-3000:]
    if p.returncode or not rows:
        last = [l for l in tail.strip().splitlines() if l.strip()]
        msg = ' '.join((last[-1] if last else f'exit status {p.returncode}').split())[:400]
        print(f'{job}: failed: {tail}', file=sys.stderr, flush=True)
        return dict(category=job['dataset'], method=job.get('method', 'backbone'), error=msg)
    return rows[0]

def section(rows: list, cols: list) -> str:
    "A markdown table of `cols` of `rows` (ResultsTable's format, without its Mean row)."
    from anomaly_fastai.metrics import ResultsTable
    if not rows: return '(no row)\n'
    sci = lambda c, v: f'{v:.1e}' if 'diff' in c and isinstance(v, float) and math.isfinite(v) else v   # differences of 1e-7 must not read 0.0000
    t = ResultsTable([{c: sci(c, r.get(c, float('nan'))) for c in cols} for r in rows])
    md = t.to_markdown()
    return md[:md.rfind('| Mean')] if '| Mean' in md else md

def write(a, argv, limit_rows, rows, dev, versions):
    from anomaly_fastai.metrics import ResultsTable
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    lim = {r['category']: r for r in limit_rows}
    flat = [{**{k: v for k, v in lim.get(r['category'], {}).items() if k.startswith('backbone')}, **r} for r in rows]
    table = ResultsTable(flat or limit_rows)
    for r in table.rows: r.setdefault('device', dev)
    table.to_csv(out.with_suffix('.csv'))
    ok = [r for r in rows if 'fit s' in r]   # a row that failed before its first figure is listed under Errors only
    data = 'the embedded bottle sample' if a.quick else ', '.join(a.datasets.split(','))
    md = [f'# Scoring speed\n\n`python bench/speed.py {" ".join(argv)}` at commit `{commit()}`, {time.strftime("%Y-%m-%d")}, on {dev}; '
          f'{versions}; torch and ONNX Runtime {a.threads} threads in process (the `anomaly-fastai` processes use their defaults). '
          f'MobileNetV2, default geometry, data: {data}. Each method in its own process, one after the other; every figure '
          'below comes from this one run (compare rows of this table with each other, not with other tables).\n',
          '## Limits: the bare backbone (images/s)\n\nMobileNetV2 to its last map (normalisation inside) on random inputs of the model input size: '
          'torch plain layout, torch channels-last (as the library runs it on a CPU), ONNX Runtime (exported with dynamo=False, opset 17).\n', section(limit_rows, ['category', 'input', 'backbone torch plain bs1 img/s', 'backbone torch plain bs32 img/s',
                                                                          'backbone torch bs1 img/s', 'backbone torch bs32 img/s',
                                                                          'backbone ort bs1 img/s', 'backbone ort bs32 img/s']),
          f'## The scoring module and the whole process\n\nModule: `det.module` on a batch of {BS} preprocessed test images (torch eager; '
          f'ONNX Runtime: `engine.onnx_session(det).run`). Predict: `anomaly-fastai predict --model FOLDER` (dir) and `--model FOLDER.onnx` '
          f'(onnx) on the `images` files, whole process with start-up (img/s = images / wall s; CPU = user + system of the process tree, '
          f'lowest of {a.repeats} alternated run(s)). `e2e/module` = dir `--no-heatmaps` img/s over the module img/s; target: issue 31. '
          'Settings other than the defaults: fewer epochs for the trained methods (speed only).\n',
          section(ok, ['category', 'method', 'settings', 'input', 'fit s', 'module torch img/s', 'module ort img/s', 'images',
                       'dir no-heatmaps img/s', 'onnx no-heatmaps img/s', 'dir no-heatmaps cpu s', 'onnx no-heatmaps cpu s', 'cpu ratio dir/onnx no-heatmaps',
                       'dir heatmaps img/s', 'onnx heatmaps img/s', 'cpu ratio dir/onnx heatmaps', 'e2e/module ort', 'e2e/module torch', 'target',
                       'test wall s']),
          '## Do the two predict paths agree? Start-up\n\n`predictions.csv` of dir against onnx (`--no-heatmaps`); start-up: predict on one image '
          '(CPU s): the model folder before its cached export exists (it is built then), with it, the .onnx file.\n',
          section(ok, ['category', 'method', 'csv rows compared', 'max |score diff|', 'max |score diff| / max |score|', 'labels differ', 'engine cache written',
                       '1-image dir uncached cpu s', '1-image dir cached cpu s', '1-image onnx cpu s', 'export s']),
          '## Where the time goes (ms per image)\n\npredict\'s steps one after the other in one process (predict itself decodes the next batch '
          'in 2 threads while one is scored), with the engine `predict --model FOLDER` uses; `sequential` img/s = 1000 / the sum of the steps.\n',
          section(ok, ['category', 'method', 'breakdown images', 'decode ms/img', 'preprocess ms/img', 'module ms/img', 'unmap ms/img',
                       'heatmap ms/img', 'csv ms/img', 'sequential no-heatmaps img/s', 'sequential heatmaps img/s', 'breakdown engine'])]
    errors = [r for r in limit_rows + rows if 'error' in r]
    if errors: md.append('## Errors\n\n' + ''.join(f'- {r["category"]} {r.get("method", "backbone")}: {r["error"]}\n' for r in errors))
    out.with_suffix('.md').write_text('\n'.join(md))
    return out.with_suffix('.md')

def parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', default='../shared/data', help='folder holding mvtec_ad/ and magnetic_tile/')
    ap.add_argument('--datasets', default='bottle,magnetic_tile', help='comma-separated: bottle, magnetic_tile (or mtd)')
    ap.add_argument('--methods', default=METHODS, help=f'comma-separated (default {METHODS})')
    ap.add_argument('--n-images', type=int, default=1000, help='images per predict run (default 1000)')
    ap.add_argument('--repeats', type=int, default=1, help='alternated predict runs per setting (default 1; the lowest CPU is kept)')
    ap.add_argument('--breakdown-images', type=int, default=256, help='images of the in-process breakdown (default 256)')
    ap.add_argument('--threads', type=int, default=2, help='torch and ONNX Runtime threads in process (default 2)')
    ap.add_argument('--out', default='bench/results/speed', help='results path without extension (--quick: a temporary folder unless given)')
    ap.add_argument('--quick', action='store_true', help='a check of the script: one method (the first of --methods), 50 images, the embedded sample')
    ap.add_argument('--one', type=json.loads, help=argparse.SUPPRESS)  # internal: one job, in a child process
    return ap

def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    a = parser().parse_args(argv)
    if a.quick:
        a.methods, a.datasets = a.methods.split(',')[0], 'sample'
        if '--n-images' not in argv: a.n_images = 50
        a.breakdown_images = min(a.breakdown_images, 32)
        if '--out' not in argv: a.out = str(Path(tempfile.gettempdir())/'speed_quick')   # never over the real table
    a.datasets = ','.join(ALIASES.get(d, d) for d in a.datasets.split(','))
    for d in a.datasets.split(','):
        if d not in DATASETS and d != 'sample': sys.exit(f'--datasets: unknown {d!r}; expected {", ".join(DATASETS)}')
    a.rate_kw = dict(min_s=0.5, max_iter=3, min_iter=1) if a.quick else dict(min_s=2.0, max_iter=20, min_iter=2)
    if a.one is not None:
        job = a.one
        row = limits(a, job['dataset']) if 'method' not in job else one_method(a, job['dataset'], job['method'])
        print('ROW ' + json.dumps(row), flush=True)
        return
    import torch, onnxruntime
    torch.set_num_threads(a.threads)
    from common import device_name
    dev, versions = device_name(), f'torch {torch.__version__}, onnxruntime {onnxruntime.__version__}'
    common = list(argv)
    limit_rows, rows = [], []
    for d in a.datasets.split(','):
        limit_rows.append(run_one(a, dict(dataset=d), common))
        print(limit_rows[-1], flush=True)
        for m in a.methods.split(','):
            rows.append(run_one(a, dict(dataset=d, method=m), common))
            print({k: v for k, v in rows[-1].items() if not k.startswith(('1-image', 'breakdown'))}, flush=True)
            write(a, argv, limit_rows, rows, dev, versions)   # every finished row is kept
    md = write(a, argv, limit_rows, rows, dev, versions)
    print(md.read_text())

if __name__ == '__main__': main()
