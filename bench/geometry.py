"""Benchmark of the image geometry: which pixels the model sees, and what that costs.

    .venv/bin/python bench/geometry.py --data ../shared/data --out bench/results/geometry [--methods knn,knn-ms,twin] [--twin-epochs 1] [--threads 2] [--append]

One row per dataset x method x geometry, each run in a fresh process (so its peak memory is its own), on MVTec AD
bottle and Magnetic Tile (its fixed split.csv):
- the `knn` baseline in every geometry: `crop` (short side 256, centre 224: the papers' protocol), `squash` (256 x
  256) and `fit` (the default: the whole image, aspect ratio kept, short side 256), and `squash` and `fit` at 224;
- `knn` tiled (`--tile 128`, 25 % overlap) on magnetic tile, at the images' own resolution;
- `knn-ms`: `knn` with a multi-scale embedding (`scales=(1, 1/sqrt2, 1/2)`, the scales of Radenovic et al.'s image
  retrieval) in `crop`, `squash` and `fit`;
- the anomaly twin with a short schedule (`--twin-epochs`, 0 skips it) in `crop` and `fit`;
- a synthetic check of why tiling exists: 4000 x 1000 images of a fine texture, a faint scratch 2 px wide in the
  test image; is the hottest point of the map on the scratch, with the default geometry and with 256 px tiles?
Image AUROC, pixel AUROC and PRO over whole original images, fit s, test images/s, peak RSS (MB).
"""
import json, resource, sys, tempfile, time
from pathlib import Path
import numpy as np, torch
from PIL import Image
from anomaly_fastai.cli import result_row
from anomaly_fastai.data import AnomalyDataset, Preprocess, Sample
from anomaly_fastai.detector import all_methods
from anomaly_fastai.evaluate import evaluate_detector, score_images
from anomaly_fastai.metrics import ResultsTable
from anomaly_fastai.tiling import TiledDetector
from common import bench_datasets, bench_parser, child_run_options, device_name, emit_row, run_child, saved_rows

GEOMETRIES = {'crop': Preprocess(256, 224, 'crop'), 'squash': Preprocess(256, mode='squash'), 'fit': Preprocess(256),
              # the same at 224, the backbones' pretraining size: how much of a geometry's result is its input size?
              'squash224': Preprocess(224, mode='squash'), 'fit224': Preprocess(224)}

MULTISCALE = (1, 2 ** -0.5, 0.5)

def make(method, geometry, backbone, seed, twin_epochs):
    params = dict(twin='line,blob,cutpaste', head='arcface', epochs=twin_epochs, epochs_frozen=0, bs=16) if method == 'twin' else {}
    if method == 'knn-ms': method, params = 'knn', dict(scales=MULTISCALE)
    if geometry == 'tile128':
        return TiledDetector(backbone, Preprocess(None), inner=method, tile=128, overlap=0.25, inner_params=params, seed=seed)
    return all_methods()[method](backbone, GEOMETRIES[geometry], seed=seed, **params)

def one_run(a):
    "Fit and evaluate one configuration; print its row as JSON (this runs in its own process)."
    torch.set_num_threads(a.threads)
    ds = next(bench_datasets(a.data, a.one['dataset']))
    det = make(a.one['method'], a.one['geometry'], a.one['backbone'], a.seed, a.twin_epochs).fit(ds, progress=False)
    m, _ = evaluate_detector(det, ds, progress=False)
    row = result_row(det, ds, m) | dict(geometry=a.one['geometry'], input=f'{det.pre.input_size[0]}x{det.pre.input_size[1]}',
                                        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, device=device_name())
    emit_row(row)

def texture(seed, h, w):
    "A fine, regular texture with mild noise (a brushed or woven surface)."
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    a = 128 + 40 * np.sin(xx / 3.1 + r.uniform(0, 6)) * np.sin(yy / 2.7 + r.uniform(0, 6)) + r.normal(0, 8, (h, w))
    return np.clip(a, 0, 255).astype(np.uint8)

def synthetic_check(backbone, seed) -> list[dict]:
    "4000 x 1000 texture, faint 2 px scratch: where is the hottest point of the map, without and with tiling?"
    d = Path(tempfile.mkdtemp())
    for i in range(4): Image.fromarray(texture(i, 1000, 4000)).save(d/f'good{i}.png')
    img = texture(99, 1000, 4000); img[600:602, 2500:2620] = 90  # 2 px wide, no darker than the texture's own dark stripes
    Image.fromarray(img).save(d/'scratch.png')
    ds = AnomalyDataset('synthetic 4000x1000', d, [Sample(d/f'good{i}.png', 0, 'good') for i in range(4)], [])
    rows = []
    for name, det in (('fit', all_methods()['knn'](backbone, Preprocess(), seed=seed)),
                      ('tile256', TiledDetector(backbone, Preprocess(None), inner='knn', tile=256, overlap=0.25, seed=seed))):
        det.fit(ds, progress=False)
        t0 = time.perf_counter()
        r = next(score_images(det, [d/'scratch.png'], progress=False, max_side=None))
        y, x = divmod(int(r['map'].argmax()), r['map'].shape[1])
        rows.append(dict(category=ds.name, method=det.label, geometry=name, input=f'{det.pre.input_size[0]}x{det.pre.input_size[1]}',
                         hottest_point=f'({y}, {x})', on_scratch=bool(590 <= y <= 613 and 2490 <= x <= 2630),
                         flagged=r['label'] == 'anomaly', fit_s=det.fit_seconds, score_s=time.perf_counter() - t0, device=device_name()))
    return rows

def main():
    ap = bench_parser(__doc__, 'bench/results/geometry')
    ap.add_argument('--methods', default='knn,knn-ms,twin', help='comma-separated rows to run: knn, knn-ms (multi-scale embedding), twin')
    ap.add_argument('--synthetic-only', action='store_true', help='run only the synthetic tiling check')
    ap.add_argument('--twin-epochs', type=int, default=1, help='epochs of the twin rows (0: no twin rows)')
    child_run_options(ap)
    a = ap.parse_args()
    if a.one: return one_run(a)
    if a.synthetic_only: return write_synthetic(a)
    out = Path(a.out)
    table = saved_rows(out) if a.append or a.notes_only else ResultsTable()
    if a.notes_only: return table.to_markdown(out.with_suffix('.md'))
    methods, datasets = a.methods.split(','), a.datasets.split(',')
    runs = [(ds, 'knn', g) for ds in datasets for g in GEOMETRIES] if 'knn' in methods else []
    runs += [('magnetic_tile', 'knn', 'tile128')] if 'magnetic_tile' in datasets and 'knn' in methods else []
    runs += [(ds, 'knn-ms', g) for ds in datasets for g in ('crop', 'squash', 'fit')] if 'knn-ms' in methods else []
    if a.twin_epochs and 'twin' in methods: runs += [(ds, 'twin', g) for ds in datasets for g in ('crop', 'fit')]
    for ds, method, geometry in runs:
        for bb in a.backbones.split(','):
            one = json.dumps(dict(dataset=ds, method=method, geometry=geometry, backbone=bb))
            row, _ = run_child([sys.executable, __file__, '--data', a.data, '--seed', a.seed, '--twin-epochs', a.twin_epochs,
                                '--threads', a.threads, '--one', one], one)
            table.add(row); print(table, flush=True)
            table.to_csv(out.with_suffix('.csv')); table.to_markdown(out.with_suffix('.md'))
    if 'knn' in methods: write_synthetic(a)

def write_synthetic(a):
    out, synth = Path(a.out), ResultsTable(synthetic_check(a.backbones.split(',')[0], a.seed))
    print(synth)
    synth.to_csv(out.parent/f'{out.name}_synthetic.csv'); synth.to_markdown(out.parent/f'{out.name}_synthetic.md')

if __name__ == '__main__': main()
