"""Benchmark of the conditional normalizing flow (`--method flow`) with 0, 5, 10 real defects per type and unseen types.

    .venv/bin/python bench/flow.py --data ../shared/data --out bench/results/flow [--datasets bottle,magnetic_tile]
        [--rows none,pseudo,5,10,unseen,patchcore@10] [--seeds 42,1,2] [--epochs 10] [--cond-dim 128] [--size 256] [--threads 1]

One row per dataset x setting, each run in a fresh process, in the default geometry (`fit`, short side `--size`),
MobileNetV2 stride-8/16 features, 8 couplings, for each seed of `--seeds` (default `--seed`; the seed picks the
training defects, the held-out good images, the flow's initialisation and its shuffling):

- `none`: unsupervised (good images only, NLL loss), evaluated on the whole test set;
- `pseudo`: BGAD's K = 0 setting, RandAugment-like pasted pseudo anomalies with the BG-SPP loss, whole test set;
- `5`, `10`: K real defect images (with masks) per defect type moved from test to train (`with_defects`, seeded),
  evaluated on the test images left (the K x types training defects are never evaluated on);
- `unseen`: all defects of the types in `--unseen-types` (per dataset) with a mask go to training, evaluated on the
  good images and the other types only (`unseen_types`);
- `METHOD@K`, e.g. `patchcore@10`: an unsupervised method of the library (its defaults, good images only) evaluated
  on exactly the test images the `K` row evaluates on, the comparison the issue's target asks for.

Columns: image AUROC, pixel AUROC, PRO over whole original images, best F1, TPR / TNR at the saved threshold, fit s,
test images/s, the number of test images evaluated, the defect images trained on, the flow rows' epochs and
positional condition size (`cond_dim`), seed, device. Below the table, the margin of each flow K row over each
`METHOD@K` row of the same dataset and seed (the same test images), per seed and on average, per `cond_dim`.
"""
import inspect, itertools, json, sys
from statistics import mean, stdev
from pathlib import Path
import pandas as pd, torch
from anomaly_fastai.cli import result_row
from anomaly_fastai.data import Preprocess, unseen_types, with_defects
from anomaly_fastai.detector import all_methods
from anomaly_fastai.evaluate import evaluate_detector
from anomaly_fastai.flow import FlowDetector
from anomaly_fastai.metrics import ResultsTable
from common import bench_datasets, bench_parser, child_run_options, device_name, emit_row, run_child, saved_rows

NOTE = '''
Every row ran on a 2-core CPU with 2 torch threads on 2026-12-03/04, each in its own process, on a quiet machine except the
magnetic tile `pseudo` and `unseen` rows at `cond_dim` 128 (beside other jobs: their fit s is inflated); the flow rows at the
library defaults of their day: 10 epochs, threshold and normalisation from the 10 % of good images held out of training
(`split_good`), and the positional condition in the `cond_dim` column: 32 until 2026-12-04, then 128 (BGAD's
`pos_embed_dim`, the default since). Rows with K > 0 and `unseen` are evaluated on the test images left after moving the
training defects (`n_test`), so their AUROCs are not on exactly the same images as the `none` / `pseudo` rows. The
library's best unsupervised method on magnetic tile is PatchCore, image AUROC 0.957 on the whole test set
(`patch_mtd.md`, MobileNetV2); each `patchcore@10` row is that method on exactly the test images of the K = 10 row of the
same seed. The seed picks the defects trained on (and so the test images), the good images held out, the flow's
initialisation and its shuffling. Across seeds PatchCore moves by 0.6 point and the flow by 1.4 (32) or 1.1 (128). One
run's margin says little, hence the margins per seed and their mean and standard error above. The issue's target
(K = 10 at least 1 point above PatchCore) was judged by a rule fixed before seeds 4-7 ran: the eight-seed mean margin
minus its standard error at least 1 point. With 32: +1.01 - 0.15, not met; with 128: +1.16 - 0.14 = +1.02, met, narrowly.
'''

UNSEEN = {'bottle': 'broken_large', 'magnetic_tile': 'blowhole,break'}

def one_run(a):
    "Fit and evaluate one setting; print its row as JSON (this runs in its own process)."
    torch.set_num_threads(a.threads)
    ds = next(bench_datasets(a.data, a.one['dataset']))
    row_kind, anomalies = a.one['row'], 'auto'
    baseline, _, setting = row_kind.rpartition('@')  # 'patchcore@10': that method on the K = 10 row's test images
    if setting == 'none': anomalies = 'none'
    elif setting == 'pseudo': anomalies = 'pseudo'
    elif setting == 'unseen': ds = unseen_types(ds, a.one['unseen'].split(','), None, a.seed)
    else: ds = with_defects(ds, int(setting), a.seed)
    if baseline:  # unsupervised: it trains on the good images only
        det = all_methods()[baseline](a.one['backbone'], Preprocess(a.size), seed=a.seed).fit(ds, progress=False)
    else: det = FlowDetector(a.one['backbone'], Preprocess(a.size), seed=a.seed, epochs=a.epochs, cond_dim=a.cond_dim, anomalies=anomalies).fit(ds, progress=False)
    print(f'fitted in {det.fit_seconds:.1f} s, losses {getattr(det, "losses", None)}', file=sys.stderr, flush=True)
    m, _ = evaluate_detector(det, ds, progress=False)
    row = result_row(det, ds, m) | dict(setting=row_kind, n_test=len(ds.test), n_train_defects=0 if baseline else len(ds.defects),
                                        input=f'{det.pre.input_size[0]}x{det.pre.input_size[1]}',
                                        epochs=float('nan') if baseline else a.epochs,
                                        cond_dim=float('nan') if baseline else a.cond_dim, seed=a.seed, device=device_name())
    emit_row(row)

def margins(table) -> str:
    "Markdown: image AUROC of each flow K row and of each `METHOD@K` row of the same dataset and seed, their margin, and its mean (with its standard error) over seeds, per `cond_dim` of the flow."
    df = pd.DataFrame(table.rows).astype({'setting': str})
    flows, lines = df[~df.setting.str.contains('@')], []
    for (cat, setting), base in df[df.setting.str.contains('@')].groupby(['category', 'setting'], sort=False):
        method, _, k = setting.partition('@')
        against = dict(zip(base.seed, base.image_auroc))
        same = flows[(flows.category == cat) & (flows.setting == k) & flows.seed.isin(against)]
        for cond, rows in same.groupby('cond_dim', sort=False, dropna=False):
            pairs = [(r.seed, r.image_auroc, against[r.seed]) for r in rows.itertuples()]
            lines += [f'| {cat} | {k} | {cond:.0f} | {method} | {s:.0f} | {f:.4f} | {m:.4f} | {100 * (f - m):+.2f} |' for s, f, m in pairs]
            if len(pairs) > 1:
                _, fs, ms = zip(*pairs)
                d = [100 * (f - m) for f, m in zip(fs, ms)]
                lines.append(f'| {cat} | {k} | {cond:.0f} | {method} | mean of {len(d)} | {mean(fs):.4f} | {mean(ms):.4f} | '
                             f'{mean(d):+.2f} ({min(d):+.2f} .. {max(d):+.2f}; standard error {stdev(d) / len(d) ** .5:.2f}) |')
    if not lines: return ''
    return ('\nImage AUROC of the flow with K defects per type against the unsupervised method on the same test images '
            '(margin in points):\n\n| dataset | K | flow cond_dim | against | seed | flow | against | margin |\n'
            '|:---|---:|---:|:---|:---|---:|---:|:---|\n' + '\n'.join(lines) + '\n')

def write_md(table, out):
    "The results table as markdown, the flow's margins over the unsupervised rows, and the note on how it was measured."
    out.with_suffix('.md').write_text(table.to_markdown() + margins(table) + NOTE)

def main():
    ap = bench_parser(__doc__, 'bench/results/flow')
    ap.add_argument('--rows', default='none,pseudo,5,10,unseen,patchcore@10',
                    help='comma-separated settings: none, pseudo, a number K, unseen, METHOD@K (an unsupervised method on the K row\'s test images)')
    ap.add_argument('--seeds', help='comma-separated seeds, each a run of every row (default: --seed)')
    ap.add_argument('--epochs', type=int, default=inspect.signature(FlowDetector).parameters['epochs'].default,
                    help='flow training epochs (default: the library default)')
    ap.add_argument('--cond-dim', type=int, default=inspect.signature(FlowDetector).parameters['cond_dim'].default,
                    help="dimension of the flow's positional condition (default: the library default)")
    ap.add_argument('--size', type=int, default=256, help='short side of the model input (default 256)')
    ap.add_argument('--unseen-types', type=json.loads, default=UNSEEN, help='JSON {dataset: "type,type"} of the types trained on in the unseen row')
    a = child_run_options(ap).parse_args()
    if a.one: return one_run(a)
    out = Path(a.out)
    table = saved_rows(out) if a.append or a.notes_only else ResultsTable()
    if a.notes_only: return write_md(table, out)
    seeds = [int(s) for s in a.seeds.split(',')] if a.seeds else [a.seed]
    for seed, ds, row, bb in itertools.product(seeds, a.datasets.split(','), a.rows.split(','), a.backbones.split(',')):
        one = json.dumps(dict(dataset=ds, row=row, backbone=bb, unseen=a.unseen_types.get(ds, '')))
        row, err = run_child([sys.executable, __file__, '--data', a.data, '--seed', seed, '--size', a.size,
                              '--epochs', a.epochs, '--cond-dim', a.cond_dim, '--threads', a.threads, '--one', one], one)
        print(err.strip().splitlines()[-1], flush=True)
        table.add(row); print(table, flush=True)
        table.to_csv(out.with_suffix('.csv')); write_md(table, out)

if __name__ == '__main__': main()
