"""ONNX Runtime's memory when scoring PatchCore: the node execution order of the session (issue 34: tiled and large banks).

    .venv/bin/python bench/ort_memory.py --train 400      # -> bench/results/ort_memory.md|csv

PatchCore (MobileNetV2, short side 256, coreset 0.1) fitted on the first `--train` good images of Magnetic Tile, exported
once, then 32 test images scored in batches of 8 (`runtime.SCORE_BS`) by ONNX Runtime sessions that differ only in
`execution_order`, alternated: the process's resident memory is sampled every 3 ms, and the peak above what it held
before scoring is reported, with the seconds it took. The exported bank search is chunked (`scoring.nearest_rows`), so its
working set should be a few chunks, whatever the bank's size.
"""
import argparse, csv, gc, subprocess, sys, threading, time
from pathlib import Path
import psutil, torch
import onnxruntime as ort
from common import device_name, markdown_table

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', default='../shared/data')
    ap.add_argument('--out', default='bench/results/ort_memory')
    ap.add_argument('--train', type=int, default=400)
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    from anomaly_fastai.data import Preprocess, load_dataset
    from anomaly_fastai.engine import engine_for
    from anomaly_fastai.patch import PatchCoreDetector
    torch.set_num_threads(a.threads)
    proc, peak = psutil.Process(), [0.]
    rss = lambda: proc.memory_info().rss / 2**20
    def poll():
        while True: peak[0] = max(peak[0], rss()); time.sleep(0.003)
    threading.Thread(target=poll, daemon=True).start()
    ds = load_dataset(Path(a.data)/'magnetic_tile'/'split.csv'); ds.train = ds.train[:a.train]
    det = PatchCoreDetector('mobilenet_v2', Preprocess(256), loo_images=4).fit(ds, progress=False)
    paths = [s.path for s in ds.test[:32]]
    orders, chosen = {'topological (ORT default)': ort.ExecutionOrder.DEFAULT, 'priority-based (the library)': ort.ExecutionOrder.PRIORITY_BASED}, {}
    plain = ort.SessionOptions
    class Options(plain):  # the library's options, but for the order under test
        def __setattr__(self, k, v): super().__setattr__(k, chosen['order'] if k == 'execution_order' else v)
    ort.SessionOptions = Options
    rows = []
    for run in range(2):
        for name, order in orders.items():
            chosen['order'] = order
            eng = engine_for(det, 'onnxruntime', threads=a.threads)
            base = rss(); peak[0] = base
            t = time.perf_counter(); list(eng.iter_predict(paths, bs=8, maps=True)); s = time.perf_counter() - t
            rows.append(dict(run=run + 1, execution_order=name, bank_rows=len(det.memory), batch=8, images=len(paths), base_mb=round(base),
                             peak_over_base_mb=round(peak[0] - base), seconds=round(s, 2), device=device_name()))
            print(rows[-1], flush=True)
            eng = None; gc.collect()
    out = Path(a.out)
    with open(out.with_suffix('.csv'), 'w', newline='') as f:
        w = csv.DictWriter(f, list(rows[0])); w.writeheader(); w.writerows(rows)
    commit = subprocess.run(['git', 'describe', '--always', '--dirty'], capture_output=True, text=True).stdout.strip()
    out.with_suffix('.md').write_text(f'# {__doc__.splitlines()[0]}\n\n`.venv/bin/python {" ".join(sys.argv)}` at commit `{commit}`, '
                                      f'{time.strftime("%Y-%m-%d")}, onnxruntime {ort.__version__}.\n\n' + markdown_table(rows))

if __name__ == '__main__': main()
