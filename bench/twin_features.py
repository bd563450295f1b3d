"""Do twin-tuned features beat the untuned backbone under the same scorer?

    python bench/twin_features.py [--datasets bottle,magnetic_tile] [--epochs 2] [--recipes mixed,realistic,realistic+distill]

For each dataset: the untuned backbone, and the body fine-tuned by `TwinDetector` with each twin recipe, each scored by
global k-NN (`knn`: pooled features, cosine 1-NN) and by PatchCore (patch features, coreset memory bank), all in the
default geometry (the whole image, aspect kept). The tuned body reaches the scorers exactly as users get it:
`get_backbone('twin:MODEL_DIR')`. Writes <out>.csv and <out>.md after every row and skips rows already there.
Columns: image AUROC, its change over the untuned backbone under the same scorer, pixel AUROC, PRO, twin training
time, scorer fit time, test images/s, device, and the image AUROC of each defect type against the good test images.
Fixed seeds; nothing is tuned on the test images.
"""
import tempfile
from pathlib import Path
from anomaly_fastai.backbones import get_backbone
from anomaly_fastai.detector import all_methods
from anomaly_fastai.saving import save_detector
from anomaly_fastai.evaluate import evaluate_detector
from anomaly_fastai.metrics import image_auroc
from anomaly_fastai.twin_detector import TwinDetector
from common import MIXED, bench_datasets, bench_parser, device_name, saved_rows

RECIPES = {'mixed': dict(twin=MIXED, freeze_bn=False), 'realistic': dict(twin='realistic', freeze_bn=False),
           'realistic+distill': dict(twin='realistic', distill=1.0, freeze_bn=False),
           'realistic+distill+frozen-bn': dict(twin='realistic', distill=1.0, freeze_bn=True),
           'realistic+frozen-bn': dict(twin='realistic', freeze_bn=True),
           # the body learns at lr/10 instead of lr/100: does a body that moves more add what the twins teach?
           'realistic+distill+frozen-bn+lr-mult-10': dict(twin='realistic', distill=1.0, freeze_bn=True, lr_mult=10)}
SCORERS = ('knn', 'patchcore')

def auroc_by_type(res) -> dict:
    "Image AUROC of each defect type against the good test images: `auroc_<type>`."
    types = sorted(set(res['defect_types']) - {'good'})
    pick = lambda t: [i for i, d in enumerate(res['defect_types']) if d in ('good', t)]
    return {f'auroc_{t}': image_auroc([res['labels'][i] for i in pick(t)], [res['scores'][i] for i in pick(t)]) for t in types}

def main():
    ap = bench_parser(__doc__, 'bench/results/twin_features')
    ap.add_argument('--recipes', default=','.join(RECIPES), help='comma-separated, from: ' + ', '.join(RECIPES))
    ap.add_argument('--scorers', default=','.join(SCORERS))
    ap.add_argument('--epochs', type=int, default=2, help='unfrozen twin epochs (after 1 frozen)')
    ap.add_argument('--bs', type=int, default=16)
    a = ap.parse_args()
    table, device = saved_rows(a.out), device_name()
    done = {(r['category'], r['features'], r['scorer']) for r in table.rows}
    with tempfile.TemporaryDirectory(prefix='twin-features-') as work:  # the twin models live only as long as the run
        run(a, table, device, done, Path(work))
    print(table)

def run(a, table, device, done, work):
    "Add a row to `table` for each dataset x backbone x recipe x scorer not `done` yet; twin models are saved under `work`."
    for ds in bench_datasets(a.data, a.datasets):
        untuned = {r['scorer']: r['image_auroc'] for r in table.rows if r['category'] == ds.name and r['features'] == 'untuned'}
        for bb_name in a.backbones.split(','):
            for recipe in ['untuned', *a.recipes.split(',')]:
                todo = [s for s in a.scorers.split(',') if (ds.name, recipe, s) not in done]
                if not todo: continue
                twin_s, tw = float('nan'), {}
                if recipe == 'untuned': backbone = get_backbone(bb_name)
                else:
                    tw = dict(RECIPES[recipe], epochs=a.epochs, epochs_frozen=1)
                    twin = TwinDetector(bb_name, bs=a.bs, seed=a.seed, **tw).fit(ds, progress=False)
                    twin_s, tw = twin.fit_seconds, dict(tw, lr_mult=twin.params['lr_mult'])  # as fitted, defaults included
                    save_detector(twin, work/f'{ds.name}-{recipe}', force=True)
                    backbone = get_backbone(f'twin:{work}/{ds.name}-{recipe}')
                    del twin
                for scorer in todo:
                    det = all_methods()[scorer](backbone, seed=a.seed).fit(ds, progress=False)
                    m, res = evaluate_detector(det, ds, progress=False)
                    if recipe == 'untuned': untuned[scorer] = m['image_auroc']
                    table.add(category=ds.name, backbone=bb_name, features=recipe, scorer=scorer, twin=tw.get('twin', ''),
                              distill=tw.get('distill', 0.), freeze_bn=tw.get('freeze_bn', ''), lr_mult=tw.get('lr_mult', ''), twin_epochs=f"1+{a.epochs}" if tw else '', image_auroc=m['image_auroc'],
                              vs_untuned=m['image_auroc'] - untuned.get(scorer, float('nan')), pixel_auroc=m['pixel_auroc'],
                              pro=m['pro'], twin_fit_s=twin_s, fit_s=det.fit_seconds, images_per_s=m['images_per_s'],
                              input='x'.join(map(str, det.pre.input_size)), device=device, **auroc_by_type(res))
                    table.to_csv(Path(a.out).with_suffix('.csv')); table.to_markdown(Path(a.out).with_suffix('.md'))
                    print(f'{ds.name} {recipe} {scorer}: image AUROC {m["image_auroc"]:.4f} '
                          f'({m["image_auroc"] - untuned.get(scorer, float("nan")):+.4f}), fit {det.fit_seconds:.0f} s', flush=True)
                    del det

if __name__ == '__main__': main()
