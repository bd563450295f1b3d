"""Benchmark of the patch-feature methods (PatchCore, PaDiM, SPADE) on the shared data.

    .venv/bin/python bench/patch.py --data ../shared/data --out bench/results/patch [--methods patchcore,padim,spade]
        [--backbones mobilenet_v2,efficientnet_lite0,efficientnet_lite2] [--size 256] [--search torch]

One row per dataset x method x backbone, each run in a fresh process (so its peak memory is its own), on MVTec AD
bottle and Magnetic Tile (its fixed split.csv), in the default geometry (`fit`: the whole image, aspect ratio
kept, short side `--size`) with each method's default parameters (PatchCore: coreset 0.1, search `--search`):
image AUROC, pixel AUROC and PRO over whole original images, best F1, TPR and TNR at the saved threshold, fit s,
test images/s, peak RSS (MB) and the size of the saved state (MB: PatchCore's bank, PaDiM's Gaussians, SPADE's
pyramids and pooled features).
"""
import argparse, json, resource, sys
from pathlib import Path
import torch
from anomaly_fastai.cli import result_row
from anomaly_fastai.data import Preprocess
from anomaly_fastai.detector import all_methods
from anomaly_fastai.evaluate import evaluate_detector
from anomaly_fastai.metrics import ResultsTable
from common import bench_datasets, bench_parser, device_name, emit_row, run_child, saved_rows

def state_mb(o) -> float:
    "Megabytes of the tensors in a (nested) state dict."
    if isinstance(o, torch.Tensor): return o.nbytes / 2**20
    if isinstance(o, dict): return sum(map(state_mb, o.values()))
    if isinstance(o, (list, tuple)): return sum(map(state_mb, o))
    return 0.

def one_run(a):
    "Fit and evaluate one configuration; print its row as JSON (this runs in its own process)."
    ds = next(bench_datasets(a.data, a.one['dataset']))
    params = dict(search=a.search) if a.one['method'] == 'patchcore' else {}
    det = all_methods()[a.one['method']](a.one['backbone'], Preprocess(a.size), seed=a.seed, **params).fit(ds, progress=False)
    print(f'fitted in {det.fit_seconds:.1f} s', file=sys.stderr, flush=True)
    m, _ = evaluate_detector(det, ds, progress=False)
    row = result_row(det, ds, m) | params | dict(input=f'{det.pre.input_size[0]}x{det.pre.input_size[1]}',
                                        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                        state_mb=state_mb(det._state()), device=device_name())
    emit_row(row)

def main():
    ap = bench_parser(__doc__, 'bench/results/patch')
    ap.add_argument('--methods', default='patchcore,padim,spade', help='comma-separated, from: patchcore, padim, spade')
    ap.add_argument('--size', type=int, default=256, help='short side of the model input (default 256, the library default)')
    ap.add_argument('--search', default='torch', help="PatchCore's search backend: torch, faiss, faiss-ivf, faiss-hnsw")
    ap.add_argument('--append', action='store_true', help='add the rows to an existing results table')
    ap.add_argument('--one', type=json.loads, help=argparse.SUPPRESS)  # internal: one run, in a child process
    a = ap.parse_args()
    if a.one: return one_run(a)
    out = Path(a.out)
    table = saved_rows(out) if a.append else ResultsTable()
    for ds in a.datasets.split(','):
        for method in a.methods.split(','):
            for bb in a.backbones.split(','):
                one = json.dumps(dict(dataset=ds, method=method, backbone=bb))
                row, _ = run_child([sys.executable, __file__, '--data', a.data, '--seed', a.seed, '--size', a.size, '--search', a.search, '--one', one], one)
                table.add(row); print(table, flush=True)
                table.to_csv(out.with_suffix('.csv')); table.to_markdown(out.with_suffix('.md'))

if __name__ == '__main__': main()
