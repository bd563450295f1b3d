"""Benchmark of the anomaly-twin method: every head x twin generator set x backbone on MVTec AD bottle and Magnetic Tile.

    python bench/twin.py --data ../shared/data --out bench/results/twin [--epochs 10] [--backbones mobilenet_v2,efficientnet_lite0]

Writes <out>.csv and <out>.md after every run (so a cut-off run keeps what it finished) and skips runs already in the
CSV (so a long benchmark can be continued). Columns: image AUROC of the k-NN score, pixel AUROC and PRO of the
Grad-CAM maps, fit time, test images/s, device. Fixed seeds; nothing is tuned on the test images.
"""
from pathlib import Path
from anomaly_fastai.data import Preprocess
from anomaly_fastai.evaluate import evaluate_detector
from anomaly_fastai.heads import HEADS
from anomaly_fastai.metrics import ResultsTable
from anomaly_fastai.twin_detector import TwinDetector
from common import MIXED, bench_datasets, bench_parser, device_name

TWIN_SETS = {'line': 'line', 'mixed': MIXED}

def main():
    ap = bench_parser(__doc__, 'bench/results/twin')
    ap.add_argument('--heads', default=','.join(HEADS))
    ap.add_argument('--twins', default=','.join(TWIN_SETS))
    ap.add_argument('--epochs', type=int, default=10)
    ap.add_argument('--bs', type=int, default=32)
    ap.add_argument('--num-workers', type=int, default=0)
    a = ap.parse_args()
    out = Path(a.out); csv = out.with_suffix('.csv')
    table = ResultsTable.from_csv(csv) if csv.exists() else ResultsTable()
    done = {(r['category'], r['backbone'], r['head'], r['twin']) for r in table.rows}
    device = device_name()
    for ds in bench_datasets(a.data, a.datasets):
        name = ds.name
        for bb in a.backbones.split(','):
            for head in a.heads.split(','):
                for twin in a.twins.split(','):
                    if (name, bb, head, twin) in done: continue
                    det = TwinDetector(bb, Preprocess(256, 224, 'crop'), head=head, twin=TWIN_SETS[twin], epochs=a.epochs, bs=a.bs,
                                       seed=a.seed, num_workers=a.num_workers)
                    det.fit(ds, progress=False)
                    m, _ = evaluate_detector(det, ds, bs=64, progress=False)
                    table.add(category=name, backbone=bb, head=head, twin=twin, epochs=a.epochs, image_auroc=m['image_auroc'],
                              pixel_auroc_gradcam=m.get('pixel_auroc', float('nan')), pro_gradcam=m.get('pro', float('nan')),
                              fit_s=det.fit_seconds, images_per_s=m['images_per_s'], device=device)
                    table.to_csv(csv); table.to_markdown(out.with_suffix('.md'))
                    print(f'{name} {bb} {head} {twin}: image AUROC {m["image_auroc"]:.4f}, fit {det.fit_seconds:.0f} s', flush=True)
    print(table)

if __name__ == '__main__': main()
