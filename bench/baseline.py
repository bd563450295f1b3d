"""Benchmark of the baseline method (pooled backbone features + cosine k-NN, patch k-NN heatmaps) on the shared data.

    python bench/baseline.py --data ../shared/data --out bench/results/baseline [--backbones mobilenet_v2]

The same fit and evaluation as `anomaly-fastai bench`, on MVTec AD bottle and Magnetic Tile (its fixed split.csv), one
row per dataset and backbone in <out>.csv and <out>.md: image AUROC, pixel AUROC, PRO, best F1, TPR and TNR at the
saved threshold (1 % of good training images flagged, leave-one-out), fit time, test images/s and the device.
"""
import argparse, platform
from pathlib import Path
import torch
from anomaly_fastai.cli import result_row
from anomaly_fastai.data import load_dataset, Preprocess
from anomaly_fastai.detector import KNNDetector, evaluate_detector
from anomaly_fastai.metrics import ResultsTable

DATASETS = {'bottle': ('mvtec_ad', 'bottle'), 'magnetic_tile': ('magnetic_tile/split.csv', None)}

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', default='../shared/data', help='folder holding mvtec_ad/ and magnetic_tile/')
    ap.add_argument('--out', default='bench/results/baseline', help='results path without extension')
    ap.add_argument('--datasets', default=','.join(DATASETS))
    ap.add_argument('--backbones', default='mobilenet_v2')
    ap.add_argument('--seed', type=int, default=42)
    a = ap.parse_args()
    out, table = Path(a.out), ResultsTable()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f'CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)'
    for name in a.datasets.split(','):
        rel, cat = DATASETS[name]
        ds = load_dataset(Path(a.data)/rel, cat); ds.name = name
        print(ds.summary(), flush=True)
        for bb in a.backbones.split(','):
            det = KNNDetector(bb, Preprocess(256, 224), seed=a.seed).fit(ds, progress=False)
            m, _ = evaluate_detector(det, ds, progress=False)
            table.add(result_row(det, ds, m) | dict(device=device))
            table.to_csv(out.with_suffix('.csv')); table.to_markdown(out.with_suffix('.md'))
    print(table)

if __name__ == '__main__': main()
