"""The recipe's three experiment setups at full size: multi-class over categories, binary vs one real defect, anomaly twin.

    python bench/experiments.py --mvtec ../shared/data/mvtec_ad --other ../shared/data/magnetic_tile/split.csv --out bench/results/experiments

1. multi-class: a classifier over the good training images of bottle and a second category (the recipe expects this to
   fail as an anomaly detector: AUROC near 0.5); scored by 1-NN embedding distance and by 1 - max softmax;
2. binary: good bottle images vs one real defect type moved from test into training (and out of the test set);
3. anomaly twin (line and mixed generators): the self-supervised setup.
Same head, backbone, epochs and seed for all; results written to <out>.csv/.md.
"""
import argparse
from pathlib import Path
from anomaly_fastai.data import load_dataset, Preprocess
from anomaly_fastai.heads import exp_multiclass, exp_binary_defect, exp_twin
from anomaly_fastai.metrics import ResultsTable
from common import MIXED, device_name

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--mvtec', default='../shared/data/mvtec_ad'); ap.add_argument('--category', default='bottle')
    ap.add_argument('--other', default='../shared/data/magnetic_tile/split.csv', help='second category for the multi-class setup')
    ap.add_argument('--out', default='bench/results/experiments')
    ap.add_argument('--head', default='arcface'); ap.add_argument('--backbone', default='mobilenet_v2')
    ap.add_argument('--epochs', type=int, default=10); ap.add_argument('--bs', type=int, default=32)
    ap.add_argument('--seed', type=int, default=42)
    a = ap.parse_args()
    ds, other = load_dataset(a.mvtec, a.category), load_dataset(a.other)
    kw = dict(head=a.head, pre=Preprocess(256, 224, 'crop'), bs=a.bs, seed=a.seed, backbone=a.backbone, epochs_frozen=1, epochs_unfrozen=a.epochs)
    device = device_name()
    table = ResultsTable()
    def add(row):
        table.add(row | dict(epochs=a.epochs, backbone=a.backbone, device=device)); print(row, flush=True)
        table.to_csv(Path(a.out).with_suffix('.csv')); table.to_markdown(Path(a.out).with_suffix('.md'))
    for row in exp_multiclass([ds, other], **kw): add(row)
    for t in ds.defect_types: add(exp_binary_defect(ds, t, **kw))
    for name, twin in (('line', 'line'), ('mixed', MIXED)): add(exp_twin(ds, twin, **kw) | dict(setup=f'twin-{name}'))
    print(table)

if __name__ == '__main__': main()
