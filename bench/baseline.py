"""Benchmark of the baseline method (pooled backbone features + cosine k-NN, patch k-NN heatmaps) on the shared data.

    python bench/baseline.py --data ../shared/data --out bench/results/baseline [--backbones mobilenet_v2]

The same fit and evaluation as `anomaly-fastai bench`, on MVTec AD bottle and Magnetic Tile (its fixed split.csv), one
row per dataset and backbone in <out>.csv and <out>.md: image AUROC, pixel AUROC, PRO, best F1, TPR and TNR at the
saved threshold (1 % of good training images flagged, leave-one-out), fit time, test images/s and the device.
"""
from pathlib import Path
from anomaly_fastai.cli import result_row
from anomaly_fastai.data import Preprocess
from anomaly_fastai.knn import KNNDetector
from anomaly_fastai.evaluate import evaluate_detector
from anomaly_fastai.metrics import ResultsTable
from common import bench_datasets, bench_parser, device_name

def main():
    a = bench_parser(__doc__, 'bench/results/baseline').parse_args()
    out, table = Path(a.out), ResultsTable()
    device = device_name()
    for ds in bench_datasets(a.data, a.datasets):
        for bb in a.backbones.split(','):
            det = KNNDetector(bb, Preprocess(256, 224, 'crop'), seed=a.seed).fit(ds, progress=False)
            m, _ = evaluate_detector(det, ds, progress=False)
            table.add(result_row(det, ds, m) | dict(device=device))
            table.to_csv(out.with_suffix('.csv')); table.to_markdown(out.with_suffix('.md'))
    print(table)

if __name__ == '__main__': main()
