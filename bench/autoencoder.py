"""Benchmark of the convolutional autoencoder baseline (`--method autoencoder`, L2 / SSIM).

    .venv/bin/python bench/autoencoder.py --data ../shared/data --out bench/results/autoencoder [--datasets bottle,magnetic_tile]
        [--losses ssim,l2] [--color rgb] [--epochs 20] [--ae-size 128] [--size 256] [--holdout 0.1] [--threads 1]

One row per dataset x loss, each run in a fresh process, in the default geometry (`fit`, short side `--size`), the
autoencoder's own input with a short side of `--ae-size` (128, the paper's), latent 100, flips as augmentation,
the threshold set on the share `--holdout` of the good images kept out of training, seed `--seed`: image AUROC,
pixel AUROC and PRO over whole original images, best F1, TPR / TNR at the saved threshold, fit s, test images/s,
device.
"""
import json, sys
from pathlib import Path
import torch
from anomaly_fastai.autoencoder import AutoencoderDetector
from anomaly_fastai.cli import result_row
from anomaly_fastai.data import Preprocess
from anomaly_fastai.evaluate import evaluate_detector
from anomaly_fastai.metrics import ResultsTable
from common import bench_datasets, bench_parser, child_run_options, device_name, emit_row, run_child, saved_rows

NOTE = '''
Measured on the 2-core CPU, 2 torch threads per run, one run at a time. The threshold (`tpr@thr`, `tnr@thr`) is set
on the share `holdout` of the good images held out of training (the library default 0.1); with `holdout` 0 the model
trains on every good image and the threshold comes from those same images. 20 epochs is far less training than
the paper's; the training loss was still falling, so a row moves with the images it trains on.
'''

def one_run(a):
    "Fit and evaluate one setting; print its row as JSON (this runs in its own process)."
    torch.set_num_threads(a.threads)
    ds = next(bench_datasets(a.data, a.one['dataset']))
    det = AutoencoderDetector(pre=Preprocess(a.size), ae_size=a.ae_size, loss=a.one['loss'], color=a.color, epochs=a.epochs,
                              holdout=a.holdout, seed=a.seed).fit(ds, progress=False)
    print(f'fitted in {det.fit_seconds:.1f} s, losses {[round(l, 4) for l in det.losses]}', file=sys.stderr, flush=True)
    m, _ = evaluate_detector(det, ds, progress=False)
    row = result_row(det, ds, m) | dict(loss=a.one['loss'], color=a.color, ae_input=f'{det.ae_input[0]}x{det.ae_input[1]}',
                                        input=f'{det.pre.input_size[0]}x{det.pre.input_size[1]}', epochs=a.epochs, holdout=a.holdout,
                                        device=device_name())
    emit_row(row)

def write_md(table, out):
    "The results table as markdown, with the note on how it was measured."
    out.with_suffix('.md').write_text(table.to_markdown() + NOTE)

def main():
    ap = bench_parser(__doc__, 'bench/results/autoencoder')
    ap.add_argument('--losses', default='ssim,l2', help='comma-separated: ssim, l2')
    ap.add_argument('--color', default='rgb', help='rgb or gray')
    ap.add_argument('--epochs', type=int, default=20, help='training epochs (default 20, the library default)')
    ap.add_argument('--ae-size', type=int, default=128, help="short side of the autoencoder's input (default 128)")
    ap.add_argument('--size', type=int, default=256, help='short side of the model input (default 256)')
    ap.add_argument('--holdout', type=float, default=0.1, help='share of the good images kept out of training to set the threshold (default 0.1, the library default)')
    a = child_run_options(ap).parse_args()
    if a.one: return one_run(a)
    out = Path(a.out)
    table = saved_rows(out) if a.append or a.notes_only else ResultsTable()
    if a.notes_only: return write_md(table, out)
    for ds in a.datasets.split(','):
        for loss in a.losses.split(','):
            one = json.dumps(dict(dataset=ds, loss=loss))
            row, err = run_child([sys.executable, __file__, '--data', a.data, '--seed', a.seed, '--size', a.size, '--ae-size', a.ae_size,
                                  '--color', a.color, '--epochs', a.epochs, '--holdout', a.holdout, '--threads', a.threads, '--one', one], one)
            print(err.strip().splitlines()[-1], flush=True)
            table.add(row); print(table, flush=True)
            table.to_csv(out.with_suffix('.csv')); write_md(table, out)

if __name__ == '__main__': main()
