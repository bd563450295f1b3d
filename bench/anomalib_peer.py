"""anomalib 2.7.0 PatchCore and PaDiM, run from anomalib's own virtualenv, on the same data, backbone, input
geometry and machine as bench/patch.py; metrics computed here by the library's one metrics module.

    python3 -m venv ../anomalib-venv
    ../anomalib-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 anomalib==2.7.0
    .venv/bin/python bench/anomalib_peer.py --anomalib-python ../anomalib-venv/bin/python --out bench/results/anomalib

For each dataset this script prepares the model inputs with the library's default geometry (`Preprocess(--size)`
resolved on the training images, exactly what `bench/patch.py` feeds our methods), stores them as batches of 32,
and runs `bench/anomalib_worker.py` in anomalib's interpreter: anomalib's own `PatchcoreModel` / `PadimModel` with
the offline EfficientNet-Lite0 weights loaded into its timm extractor (every key checked), the backbone's own
normalisation (not anomalib's default ImageNet statistics), stride-8/16 layers for PatchCore (stride-4/8/16 for
PaDiM, 100 random channels), anomalib's k-center-greedy coreset at `--coreset` (per dataset). The worker returns
raw scores and maps at the input size. A second PatchCore run per dataset (`--speed-bank`) times anomalib's test
pass with a bank as large as its default coreset ratio 0.1 keeps, drawn at random: test cost depends only on the
bank's size, and the greedy selection at 0.1 takes hours here. Its accuracy columns are not PatchCore's.
Here the worker's maps go back to each whole original image (`Preprocess.unmap`,
long side capped at 1024 as in `score_dataset`) and image AUROC, pixel AUROC and PRO are computed as for our rows.

Timings favour the peer: its inputs are decoded and resized before its clock starts (ours include reading and
resizing every image), and it runs without its Trainer. Peak RSS is the worker process's own.
"""
import json, tempfile
from pathlib import Path
import torch
from anomaly_fastai.backbones import _lite_state_dict
from anomaly_fastai.data import Preprocess, image_size
from anomaly_fastai.evaluate import _mask_at
from anomaly_fastai.runtime import eval_size
from anomaly_fastai.metrics import ResultsTable, evaluate
from common import bench_datasets, bench_parser, device_name, run_child

LAYERS = {'patchcore': ['blocks.2', 'blocks.4'], 'padim': ['blocks.1', 'blocks.2', 'blocks.4']}
LITE_MEAN = LITE_STD = (0.5, 0.5, 0.5)   # the EfficientNet-Lite weights' statistics (as in anomaly_fastai.backbones)

def save_batches(pre: Preprocess, paths, folder: Path, bs: int = 32):
    "Model inputs of `paths` exactly as the library builds them, as float16 batch files (memory stays per batch)."
    folder.mkdir(parents=True)
    for i in range(0, len(paths), bs):
        torch.save(torch.stack([pre.image(p) for p in paths[i:i + bs]]).half(), folder/f'{i // bs:05d}.pt')

def run_peer(a, ds, method: str, bank: dict, work: Path, weights: Path) -> dict:
    args = bank | dict(method=method, n_features=100, layers=LAYERS[method], timm_name='tf_efficientnet_lite0',
                weights=str(weights), mean=LITE_MEAN, std=LITE_STD, work=str(work), seed=a.seed)
    row, _ = run_child([a.anomalib_python, Path(__file__).with_name('anomalib_worker.py'), json.dumps(args)], f'anomalib {method} on {ds.name}')
    return row | torch.load(work/'out.pt')

def runs(a, dataset: str):
    "(method, coreset, random bank ratio) of each peer run on `dataset`."
    for method in a.methods.split(','):
        if method != 'patchcore': yield method, float('nan'), None; continue
        if a.coresets.get(dataset): yield method, a.coresets[dataset], None  # ratio 0: only the speed reference
        if a.speed_bank: yield method, float('nan'), a.speed_bank

def main():
    ap = bench_parser(__doc__, 'bench/results/anomalib')
    ap.add_argument('--anomalib-python', default='../anomalib-venv/bin/python', help="python of anomalib's virtualenv")
    ap.add_argument('--methods', default='patchcore,padim')
    ap.add_argument('--size', type=int, default=256, help='short side of the input, as bench/patch.py (default 256)')
    ap.add_argument('--coreset', default='bottle=0.01,magnetic_tile=0.001',
                    help="anomalib PatchCore's coreset ratio per dataset (its default 0.1 is hours on this CPU; 0: skip the greedy run)")
    ap.add_argument('--speed-bank', type=float, default=0.1,
                    help='also time anomalib PatchCore with a random bank of this share of the patches: the size its '
                         'default coreset 0.1 keeps, without the hours of greedy selection (0: skip)')
    a = ap.parse_args()
    a.coresets = {k: float(v) for k, v in (kv.split('=') for kv in a.coreset.split(','))}
    out, table = Path(a.out), ResultsTable()
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp)/'lite0.pt'
        torch.save(_lite_state_dict(0), weights)
        for ds in bench_datasets(a.data, a.datasets):
            pre = Preprocess(a.size).resolved([s.path for s in ds.train])
            inputs = Path(tmp)/ds.name
            save_batches(pre, [s.path for s in ds.train], inputs/'train'); save_batches(pre, [s.path for s in ds.test], inputs/'test')
            labels = torch.tensor([s.label for s in ds.test])
            for method, coreset, random_bank in runs(a, ds.name):
                r = run_peer(a, ds, method, dict(coreset=coreset, random_bank=random_bank), inputs, weights)
                sizes = [eval_size(image_size(s.path), 1024) for s in ds.test]
                maps = [pre.unmap(m.float(), sz) for m, sz in zip(r['maps'], sizes)]
                masks = [_mask_at(s, sz) for s, sz in zip(ds.test, sizes)]
                m = evaluate(labels, r['scores'], masks, maps)
                name = f'anomalib {method}' + (f', random {random_bank:g} bank (speed reference)' if random_bank else '')
                table.add(dict(category=ds.name, method=name, backbone='efficientnet_lite0',
                               image_auroc=m['image_auroc'], pixel_auroc=m['pixel_auroc'], pro=m['pro'], f1=m['f1'],
                               coreset=coreset, fit_s=r['fit_s'], images_per_s=r['n_test'] / r['test_s'],
                               input=f'{pre.input_size[0]}x{pre.input_size[1]}', peak_rss_mb=r['peak_rss_mb'],
                               state_mb=r['state_mb'], device=device_name()))
                print(table, flush=True)
                table.to_csv(out.with_suffix('.csv')); table.to_markdown(out.with_suffix('.md'))

if __name__ == '__main__': main()
