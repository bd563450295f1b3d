"""Nearest-neighbour search and greedy coreset on this machine: each backend of `scoring.NearestNeighbours` and
`scoring.greedy_coreset` (exact, in cells, and shuffled chunks as the naive alternative).

    python bench/search.py --data ../shared/data --out bench/results/search

Search, Euclidean, k=1: build and query seconds of the exact torch search, exact faiss, faiss IVF (two nprobe) and
faiss HNSW (two ef_search; banks up to --hnsw-max only, its build is single-threaded), and recall@1 against the exact
torch search. Banks: bottle's training patch features (MobileNetV2 stride 8 + upsampled stride 16, 3x3 average:
~214k x 128, from --data) queried with --queries patches of its test images, and --big-banks feature-like vectors
(clusters of different spread in a 24-dim latent space through a random ReLU layer, plus noise; --banks of them
when --data has no bottle) queried with vectors from the same distribution, at most --max-work / bank size of them
so that the exact searches stay within minutes on a CPU.
Coreset: greedy_coreset keeping 10 % of the rows of the bottle training patches, subsampled to 50k (exact greedy,
cells of 4k/8k/16k rows, shuffled chunks with fixed shares) and whole, and of --coreset-rows (780k, Magnetic Tile's
size at 256 px square input; 876k in the default geometry) feature-like vectors of --coreset-dim dims: seconds and coverage radius (the largest distance from a row to
its nearest kept row, in the original space; over --radius-rows random rows when there are more). Exact greedy up
to --exact-max rows (its time grows as rows^2).
Results go to <out>.csv (one row per run) and <out>.md (one table per part). The CPU is shared with other jobs
while this runs: timings are noisy.
"""
import math, time
from pathlib import Path
import pandas as pd, torch, torch.nn.functional as F
from anomaly_fastai.backbones import extract_features, get_backbone
from anomaly_fastai.data import Preprocess, test_dl, train_dls
from anomaly_fastai.scoring import NearestNeighbours, greedy_coreset
from common import bench_datasets, bench_parser, device_name

def feature_like(n: int, dim: int, seed: int, clusters: int = 512, latent: int = 24) -> torch.Tensor:
    "n vectors (n, dim) shaped like CNN features: non-negative, clustered, with clusters of different spread."
    g = torch.Generator().manual_seed(seed)
    centres, spread = torch.randn(clusters, latent, generator=g) * 2, torch.rand(clusters, generator=g) * 0.9 + 0.1
    w = torch.randn(latent, dim, generator=g) / math.sqrt(latent)
    c = torch.randint(clusters, (n,), generator=g)
    return F.relu((centres[c] + torch.randn(n, latent, generator=g) * spread[c, None]) @ w) + 0.05 * torch.randn(n, dim, generator=g)

def patch_features(bb, batches) -> torch.Tensor:
    "One row per stride-8 position: MobileNetV2 stride 8 + upsampled stride 16, 3x3 average (128 dims)."
    out = []
    for xb, *_ in batches:
        f = extract_features(bb, xb, ('stride8', 'stride16'))
        up = F.interpolate(f['stride16'], size=f['stride8'].shape[-2:], mode='bilinear')
        x = F.avg_pool2d(torch.cat([f['stride8'], up], 1), 3, 1, 1)
        out.append(x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]))
    return torch.cat(out)

def bottle_patches(data) -> tuple[torch.Tensor, torch.Tensor] | None:
    "Patch features of bottle's good training images and of its test images, or None without the shared data."
    if not (Path(data)/'mvtec_ad'/'bottle').exists(): return None
    ds = next(bench_datasets(data, 'bottle'))
    pre, bb = Preprocess(256).resolved([s.path for s in ds.train]), get_backbone('mobilenet_v2').eval_()
    return patch_features(bb, train_dls(ds, pre, bs=32).train), patch_features(bb, test_dl(ds, pre, bs=32))

def timed(f):
    t = time.perf_counter(); r = f()
    return r, time.perf_counter() - t

def bench_search(name: str, bank: torch.Tensor, queries: torch.Tensor, hnsw_max: int, seed: int):
    n = len(bank)
    setups = [('torch', [{}]), ('faiss', [{}]), ('faiss-ivf', [dict(nprobe=8), dict(nprobe=32)])]
    if n <= hnsw_max: setups.append(('faiss-hnsw', [dict(ef_search=64), dict(ef_search=128)]))
    exact = None  # the torch search's nearest neighbours, the reference of recall@1
    for backend, searches in setups:
        nn, build = timed(lambda: NearestNeighbours('euclidean', backend=backend, seed=seed).fit(bank))
        for params in searches:
            for k, v in params.items(): setattr(nn, k, v)  # search-time parameters: no rebuild
            (d, i), query = timed(lambda: nn.search(queries, 1))
            if exact is None: exact = i[:, 0]
            extra = dict(nlist=nn.index.nlist) if backend == 'faiss-ivf' else dict(hnsw_m=nn.hnsw_m) if backend == 'faiss-hnsw' else {}
            yield dict(part='search', data=name, rows=n, dim=bank.shape[1], queries=len(queries), method=backend,
                       params=' '.join(f'{k}={v}' for k, v in {**extra, **params}.items()), build_s=round(build, 2),
                       query_s=round(query, 2), recall_at_1=round(float((i[:, 0] == exact).float().mean()), 4))

def shuffled_chunks(x: torch.Tensor, n: int, chunk: int, seed: int) -> torch.Tensor:
    "The naive speed-up: exact greedy on each chunk of the shuffled rows, with its fixed share of n."
    perm, k = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)), math.ceil(len(x) / chunk)
    bounds = [round(j * len(x) / k) for j in range(k + 1)]
    return torch.cat([perm[a:b][greedy_coreset(x[perm[a:b]], round(b * n / len(x)) - round(a * n / len(x)), seed=seed, chunk=None)]
                      for a, b in zip(bounds, bounds[1:])])

def coverage_radius(x: torch.Tensor, idx: torch.Tensor, rows: int, seed: int) -> float:
    sample = x if len(x) <= rows else x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:rows]]
    return float(NearestNeighbours('euclidean').fit(x[idx]).search(sample, 1)[0].max())

def bench_coreset(name: str, x: torch.Tensor, exact_max: int, radius_rows: int, seed: int, sweep: bool):
    n = len(x) // 10
    runs = ([('exact', dict(chunk=None))] if len(x) <= exact_max else []) + [('cells', dict(chunk=8192))]
    if sweep: runs += [('cells', dict(chunk=c)) for c in (4096, 16384)] + [('shuffled chunks', dict(chunk=8192))]
    for method, kw in runs:
        f = (lambda: shuffled_chunks(x, n, kw['chunk'], seed)) if method == 'shuffled chunks' else (lambda: greedy_coreset(x, n, seed=seed, **kw))
        idx, secs = timed(f)
        yield dict(part='coreset', data=name, rows=len(x), dim=x.shape[1], kept=n, method=method,
                   params=f"chunk={kw['chunk']}", seconds=round(secs, 1),
                   radius=round(coverage_radius(x, idx, radius_rows, seed), 4), radius_rows=min(len(x), radius_rows))

def markdown(rows: list[dict]) -> str:
    "Rows with the same keys as a markdown table."
    lines = [list(rows[0]), ['---'] * len(rows[0])] + [list(map(str, r.values())) for r in rows]
    return '\n'.join('| ' + ' | '.join(l) + ' |' for l in lines) + '\n'

def main():
    ap = bench_parser(__doc__, 'bench/results/search')
    ap.add_argument('--banks', default='200000,1000000', help='feature-like bank sizes of the search part without --data')
    ap.add_argument('--big-banks', default='1000000', help='feature-like bank sizes besides the bottle bank with --data')
    ap.add_argument('--dim', type=int, default=128, help='vector size of the search part')
    ap.add_argument('--queries', type=int, default=10000)
    ap.add_argument('--max-work', type=float, default=2e9, help='most queries x bank rows per search')
    ap.add_argument('--hnsw-max', type=int, default=250000, help='largest bank to build an HNSW index for')
    ap.add_argument('--coreset-rows', type=int, default=780000, help='feature-like coreset rows (Magnetic Tile: ~780k patches at 256 px square input)')
    ap.add_argument('--coreset-dim', type=int, default=256, help='vector size of the feature-like coreset rows')
    ap.add_argument('--exact-max', type=int, default=50000, help='most rows for the exact greedy (O(rows^2) time)')
    ap.add_argument('--radius-rows', type=int, default=50000, help='rows the coverage radius is measured on')
    a = ap.parse_args()
    out, rows, device = Path(a.out), [], device_name()
    def save():
        out.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).assign(device=device).to_csv(out.with_suffix('.csv'), index=False)
        parts = dict.fromkeys(r['part'] for r in rows)
        out.with_suffix('.md').write_text(f'Device: {device}, shared with other jobs: timings are noisy.\n\n' + '\n'.join(
            f'## {p}\n\n' + markdown([{k: v for k, v in r.items() if k != 'part'} for r in rows if r['part'] == p]) for p in parts))
    def run(gen):
        for r in gen:
            rows.append(r); save(); print(r, flush=True)
    bottle = bottle_patches(a.data)
    g = torch.Generator().manual_seed(a.seed)
    if bottle is not None:  # a real ~200k bank, queried with patches of the test images (defects included)
        train, test = bottle
        run(bench_search('bottle patches', train, test[torch.randperm(len(test), generator=g)[:a.queries]], a.hnsw_max, a.seed))
    for n in map(int, (a.banks if bottle is None else a.big_banks).split(',')):
        q = min(a.queries, int(a.max_work // n))
        x = feature_like(n + q, a.dim, a.seed)
        run(bench_search('feature-like', x[:n], x[n:], a.hnsw_max, a.seed))
    if bottle is not None:
        sample = train[torch.randperm(len(train), generator=g)[:50000]]
        run(bench_coreset('bottle patches (50k sample)', sample, a.exact_max, a.radius_rows, a.seed, sweep=True))
        run(bench_coreset('bottle patches', train, a.exact_max, a.radius_rows, a.seed, sweep=False))
    run(bench_coreset('feature-like', feature_like(a.coreset_rows, a.coreset_dim, a.seed), a.exact_max, a.radius_rows, a.seed, sweep=False))

if __name__ == '__main__': main()
