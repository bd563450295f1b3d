"""The `knn` baseline's image embedding: four candidates from the literature, selected on training images only.

    python bench/embedding.py --threads 2

Candidates (mobilenet_v2, default `fit` geometry resolved from the training images, cosine 1-NN):
- `mean`: the library's default, the mean-pooled last map;
- `multi-scale`: the library's `scales=(1, 1/sqrt 2, 1/2)` (Radenovic, Tolias and Chum, TPAMI 2018);
- `multi-level`: the L2-normalised mean-pooled stride-16 and last maps, concatenated (Rippel et al., ICPR 2020;
  PatchCore sec. 3.1); experimental, here only;
- `gem`: generalised-mean pooling of the last map, p = 3 (Radenovic et al. 2018); experimental, here only.

`pseudo_auroc` reads no test image: 20 % of the good training images are held out (seed 42), the other 80 % are the
bank, and each held-out image is scored against one anomaly twin of itself (`realistic` twins, seed 0). This is the
column a candidate is chosen by. `image_auroc` is on the test images, banks of all good training images; the 95 %
interval of its difference to `mean` is a paired bootstrap over good and defective test images (2000 resamples).
"""
import math
from pathlib import Path
import numpy as np, torch, torch.nn.functional as F
from anomaly_fastai.backbones import get_backbone, extract_features
from anomaly_fastai.data import Preprocess, split_good
from anomaly_fastai.knn import pooled_embedding
from anomaly_fastai.metrics import ResultsTable, image_auroc
from anomaly_fastai.scoring import KNNScorer
from anomaly_fastai.twin import AnomalyTwinDataset
from common import bench_datasets, bench_parser, device_name

CANDIDATES = ('mean', 'multi-scale', 'multi-level', 'gem')

def embeddings(bb, x: torch.Tensor) -> dict:
    "Every candidate's image embeddings (B, C) of the batch `x`."
    f = extract_features(bb, x, layers=('stride16', 'body'))
    mid, last = f['stride16'], f['body']
    body_of = lambda xs: extract_features(bb, xs, layers=('body',))['body']
    return {'mean': pooled_embedding(x, last),
            'multi-scale': pooled_embedding(x, last, (1., 2 ** -0.5, .5), body_of),
            'multi-level': torch.cat([F.normalize(mid.mean((2, 3)), dim=1), F.normalize(last.mean((2, 3)), dim=1)], 1) / math.sqrt(2),
            'gem': last.clamp_min(1e-6).pow(3).mean((2, 3)).pow(1 / 3)}

def embed(bb, images, bs: int = 32) -> dict:
    "Every candidate's embeddings of a list of (3, H, W) images, in batches."
    parts = [embeddings(bb, torch.stack(images[i:i + bs])) for i in range(0, len(images), bs)]
    return {c: torch.cat([p[c] for p in parts]) for c in CANDIDATES}

def knn_scores(bank: dict, queries: dict) -> dict:
    return {c: KNNScorer(1).fit(bank[c]).score(queries[c]).numpy() for c in CANDIDATES}

def auroc(y, s) -> float: return image_auroc(torch.as_tensor(y), torch.as_tensor(s))

def pseudo_aurocs(bb, ds, pre) -> dict:
    "Held-out good training images against their anomaly twins, banks of the other good training images."
    kept, held = split_good(len(ds.train), 0.2, seed=42)
    bank = embed(bb, [pre.image(ds.train[i].path) for i in kept])
    twins = AnomalyTwinDataset([ds.train[i] for i in held], pre, twin='realistic', seed=0)
    items = [twins[i] for i in range(len(twins))]
    s = knn_scores(bank, embed(bb, [x for x, _ in items]))
    y = [int(t) for _, t in items]
    return {c: auroc(y, s[c]) for c in CANDIDATES}

def bootstrap_diffs(y, s: dict, ref: str = 'mean', n: int = 2000, seed: int = 0) -> dict:
    "95 % interval of AUROC(s[c]) - AUROC(s[ref]) for every other candidate c, on the same resamples of good and defective images."
    rng, good, bad = np.random.default_rng(seed), np.where(y == 0)[0], np.where(y == 1)[0]
    diffs = {c: [] for c in s if c != ref}
    for _ in range(n):
        i = np.concatenate([rng.choice(good, len(good)), rng.choice(bad, len(bad))])
        base = auroc(y[i], s[ref][i])
        for c in diffs: diffs[c].append(auroc(y[i], s[c][i]) - base)
    return {c: (float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))) for c, d in diffs.items()}

def main():
    ap = bench_parser(__doc__, 'bench/results/embedding')
    ap.add_argument('--threads', type=int, default=2, help='torch threads')
    a = ap.parse_args()
    torch.set_num_threads(a.threads); torch.manual_seed(a.seed)
    out, table, device = Path(a.out), ResultsTable(), device_name()
    bb = get_backbone('mobilenet_v2')
    for ds in bench_datasets(a.data, a.datasets):
        pre = Preprocess().resolved([s.path for s in ds.train])
        pseudo = pseudo_aurocs(bb, ds, pre)
        y = np.array([s.label for s in ds.test])
        s = knn_scores(embed(bb, [pre.image(x.path) for x in ds.train]), embed(bb, [pre.image(x.path) for x in ds.test]))
        ci = bootstrap_diffs(y, s)
        for c in CANDIDATES:
            lo, hi = ci.get(c, (None, None))
            table.add(category=ds.name, embedding=c, pseudo_auroc=pseudo[c], image_auroc=auroc(y, s[c]),
                      diff_to_mean_lo=lo, diff_to_mean_hi=hi, input='x'.join(map(str, pre.input_size)), device=device)
            table.to_csv(out.with_suffix('.csv')); table.to_markdown(out.with_suffix('.md'))
    print(table.to_markdown())

if __name__ == '__main__': main()
