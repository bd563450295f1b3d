"""Export speed (issue 14): CPU images/s at batch 1 and 32 for in-process PyTorch, TorchScript and ONNX Runtime, per method,
with the exported file size, the runtime's startup time (import + session load) and its import footprint (modules, RSS).

    .venv/bin/python bench/export.py --out bench/results/export            # embedded bottle sample, default geometry (256 px)
    .venv/bin/python bench/export.py --methods knn,patchcore --size 128    # a quicker subset
    .venv/bin/python bench/export.py --methods flow,autoencoder --size 64 --out /tmp/export_check   # a smoke run (seconds)
"""
import argparse, json, subprocess, sys, tempfile, time
from pathlib import Path
import torch
from anomaly_fastai.data import Preprocess, load_dataset
from anomaly_fastai.detector import all_methods
from anomaly_fastai.saving import load_detector, save_detector
from anomaly_fastai.export import export_model, load_torchscript
from anomaly_fastai.metrics import ResultsTable

# speed only: the trained methods get one epoch (their scoring cost does not depend on it)
SETTINGS = dict(knn={}, patchcore={}, padim={}, spade={}, twin=dict(epochs=1, epochs_frozen=0), flow=dict(epochs=1),
                autoencoder=dict(epochs=1))

def rate(fn, x, bs, min_s=1.5, max_iter=20):
    "Images/s of `fn` on batches of `bs` taken from `x` (one warm-up call, then at least `min_s` s or `max_iter` calls)."
    xb = x[:bs] if len(x) >= bs else x.repeat((bs + len(x) - 1) // len(x), 1, 1, 1)[:bs]
    fn(xb)
    n, t0 = 0, time.perf_counter()
    while n < max_iter and (time.perf_counter() - t0 < min_s or n < 2):
        fn(xb); n += 1
    return n * bs / (time.perf_counter() - t0)

FOOTPRINT = """
import json, sys, time
t0 = time.perf_counter()
from anomaly_fastai import runtime
m = runtime.load(sys.argv[1])
t1 = time.perf_counter()
status = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines() if ':' in l)
# VmHWM, not getrusage's ru_maxrss: that one is inherited across fork + exec from the (large) benchmark process
print(json.dumps(dict(startup_s=t1 - t0, modules=len(sys.modules), rss_mb=int(status['VmHWM'].split()[0]) / 1024,
                      torch='torch' in sys.modules)))
"""

def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', default=None, help='dataset (default: the embedded bottle sample)')
    ap.add_argument('--category', default=None)
    ap.add_argument('--methods', default='knn,patchcore,padim,spade,twin,flow,autoencoder')
    ap.add_argument('--size', type=int, default=256)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--out', default='bench/results/export')
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    import onnxruntime as ort
    ds = load_dataset(a.data, a.category)
    tmp = Path(tempfile.mkdtemp())
    table, notes = ResultsTable(), []
    for method in a.methods.split(','):
        det = all_methods()[method](pre=Preprocess(a.size), device='cpu', **SETTINGS.get(method, {})).fit(ds, progress=False)
        save_detector(det, tmp/method)
        det = load_detector(tmp/method, device='cpu')
        x = torch.stack([det.pre.image(s.path) for s in ds.test])
        files = {}
        for fmt, ext in (('onnx', 'onnx'), ('torchscript', 'pt')):
            try: files[fmt] = export_model(tmp/method, fmt, tmp/f'{method}.{ext}')
            except RuntimeError as e: notes.append(f'{method}: no {fmt} file: {str(e)[:300]}')  # e.g. an op the ONNX exporter cannot convert
        def pytorch(xb): return det.score(xb)
        runners = dict(pytorch=pytorch, torchscript=None, onnxruntime=None)
        if 'torchscript' in files:
            ts, _ = load_torchscript(files['torchscript'])
            def torchscript(xb):
                with torch.no_grad(): return ts(xb)
            runners['torchscript'] = torchscript
        fp = dict(startup_s=float('nan'), modules=float('nan'), rss_mb=float('nan'))
        if 'onnx' in files:
            so = ort.SessionOptions(); so.intra_op_num_threads = a.threads
            sess = ort.InferenceSession(str(files['onnx']), so, providers=['CPUExecutionProvider'])
            def onnxruntime(xb): return sess.run(None, {'x': xb.numpy()})
            runners['onnxruntime'] = onnxruntime
            fp = json.loads(subprocess.run([sys.executable, '-c', FOOTPRINT, str(files['onnx'])], capture_output=True, text=True, check=True).stdout)
        row = dict(method=method, backbone=det.backbone_name, input=f'{det.pre.input_size[0]}x{det.pre.input_size[1]}')
        for name, fn in runners.items():
            for bs in (1, 32):
                if fn is None: row[f'{name} bs{bs} img/s'] = float('nan'); continue
                try: row[f'{name} bs{bs} img/s'] = rate(fn, x, bs)
                except Exception as e:  # e.g. out of memory at batch 32
                    row[f'{name} bs{bs} img/s'] = float('nan'); notes.append(f'{method} {name} bs {bs}: {type(e).__name__}: {str(e)[:120]}')
        size = lambda fmt: files[fmt].stat().st_size / 1e6 if fmt in files else float('nan')
        row.update({'onnx MB': size('onnx'), 'torchscript MB': size('torchscript'),
                    'runtime startup s': fp['startup_s'], 'runtime modules': fp['modules'], 'runtime RSS MB': fp['rss_mb']})
        table.add(row)
        print(row, flush=True)
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix('.csv')); table.to_markdown(out.with_suffix('.md'))
    md = out.with_suffix('.md')
    head = (f'# Export speed\n\n`python bench/export.py {" ".join(argv or sys.argv[1:])}` on {"the embedded bottle sample" if a.data is None else a.data} '
            f'({len(ds.test)} test images), input {a.size} px (`fit` geometry), MobileNetV2, CPU, {a.threads} threads; torch {torch.__version__}, '
            f'onnxruntime {ort.__version__}. Timings are from one run, one method after the other; '
            'compare rows with each other, not with other tables. PyTorch = `Detector.score` in process; TorchScript and ONNX Runtime '
            'score the exported file (batch of preprocessed images -> score, norm_score, map, anomalous). Runtime startup = '
            '`from anomaly_fastai import runtime` + `runtime.load(file)` in a fresh process; modules = `len(sys.modules)` after it; '
            'RSS = peak resident memory (VmHWM) of that process (no torch imported).\n\n')
    md.write_text(head + md.read_text() + ''.join(f'\n- {n}' for n in notes) + '\n')
    print(md.read_text())

if __name__ == '__main__': main()
