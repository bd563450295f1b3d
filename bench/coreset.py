"""PatchCore's coreset at bounded cost (issue 34): the cells greedy against the exact greedy, and tiles at native resolution.

    .venv/bin/python bench/coreset.py --part exact      # -> bench/results/coreset.md|csv
    .venv/bin/python bench/coreset.py --part tile-fit   # -> bench/results/coreset_tile_fit.md|csv

`exact`: PatchCore (defaults: MobileNetV2, short side 256, coreset 0.1) fitted on the first `--train` good training
images of bottle and of Magnetic Tile twice, once with the library's coreset (greedy k-center within cells of at most
8,192 close rows: linear in the patches) and once with the exact greedy (quadratic), each evaluated on the whole test
set. Both run in the same process on the same patches; only the coreset differs. Columns: image / pixel AUROC, PRO,
the coreset's seconds, the share of the exact bank's rows the cells bank also picked (`shared`), and each bank's
coverage radius (the largest distance from any training patch to its nearest bank row, in the full feature space).
The exact greedy on all of bottle's 209 images would take about 25 minutes on 2 cores (bench/results/search.md: 79 s
for 50k rows, quadratic), Magnetic Tile's 761 hours: hence `--train`.

`tile-fit`: the issue's target, `anomaly-fastai fit --method patchcore --tile 256` on 250 images of 0.6 MP (776 x 776:
bottle's good images, cycled with seeded flips) in under 10 minutes on 2 cores, timed as a whole process.
"""
import argparse, csv, json, resource, subprocess, sys, time
from pathlib import Path
import torch
from common import bench_datasets, device_name, emit_row, markdown_table

def coverage_radius(patches: torch.Tensor, bank: torch.Tensor, chunk: int = 4096) -> float:
    "The largest Euclidean distance from a row of `patches` to its nearest row of `bank`."
    return max(float(torch.cdist(patches[i:i + chunk], bank).min(1).values.max()) for i in range(0, len(patches), chunk))

def one_exact(a):
    "Fit PatchCore with both coresets on the first `--train` images of one dataset; emit one row per coreset."
    import anomaly_fastai.patch as patch
    from anomaly_fastai.cli import result_row
    from anomaly_fastai.data import Preprocess
    from anomaly_fastai.evaluate import evaluate_detector
    from anomaly_fastai.scoring import greedy_coreset
    torch.set_num_threads(a.threads)
    ds = next(bench_datasets(a.data, a.one['dataset']))
    ds.train = ds.train[:a.train]
    seen = {}
    def recorded(x, n, chunk, **kw):  # the coreset PatchCore calls, timed; its input patches kept for the radius
        t = time.perf_counter(); idx = greedy_coreset(x, n, chunk=chunk, **kw)
        seen.update(seconds=time.perf_counter() - t, idx=idx, patches=x); return idx
    banks = {}
    for name, chunk in (('cells', 8192), ('exact', None)):
        patch.greedy_coreset = lambda x, n, chunk=chunk, **kw: recorded(x, n, chunk, **kw)
        det = patch.PatchCoreDetector('mobilenet_v2', Preprocess(256), seed=a.seed).fit(ds, progress=False)
        m, _ = evaluate_detector(det, ds, progress=False)
        banks[name] = seen['idx']
        row = result_row(det, ds, m) | dict(coreset=name, train_images=len(ds.train), patches=len(seen['patches']), bank_rows=len(seen['idx']),
                                            coreset_s=round(seen['seconds'], 1),
                                            radius=round(coverage_radius(seen['patches'], seen['patches'][seen['idx']]), 4), device=device_name())
        if name == 'exact':
            row['shared'] = round(len(set(banks['cells'].tolist()) & set(banks['exact'].tolist())) / len(banks['exact']), 4)
        emit_row(row)

def one_tile_fit(a):
    "Write 250 images of 0.6 MP, then time `fit --method patchcore --tile 256` on them in a child process."
    import numpy as np
    from PIL import Image
    work = Path(a.work); train = work/'data'/'train'/'good'
    if not train.exists():  # the MVTec layout: every image in train/good is a training image (test/good: two, which fit never reads)
        src = sorted((Path(a.data)/'mvtec_ad'/'bottle'/'train'/'good').glob('*.png')) + sorted((Path(a.data)/'mvtec_ad'/'bottle'/'test'/'good').glob('*.png'))
        rng = np.random.default_rng(a.seed)
        for folder, n in ((train, a.images), (work/'data'/'test'/'good', 2)):
            folder.mkdir(parents=True)
            for i in range(n):
                im = Image.open(src[i % len(src)]).convert('RGB').resize((776, 776), Image.BILINEAR)
                if rng.random() < 0.5: im = im.transpose(Image.FLIP_LEFT_RIGHT)
                if rng.random() < 0.5: im = im.transpose(Image.FLIP_TOP_BOTTOM)
                im.save(folder/f'{i:03d}.png')
    cmd = [str(Path(sys.executable).parent/'anomaly-fastai'), 'fit', '--data', str(work/'data'), '--method', 'patchcore', '--tile', '256',
           '--out', str(work/'model'), '--force', '--quiet']
    t = time.perf_counter(); p = subprocess.run(cmd, capture_output=True, text=True); wall = time.perf_counter() - t
    if p.returncode: sys.exit(p.stderr[-3000:])
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    cfg = json.loads((work/'model'/'config.json').read_text())
    trained = len(cfg['train_paths'])
    if trained != a.images: sys.exit(f'fit trained on {trained} images, expected {a.images}')
    emit_row(dict(images=trained, image_size='776x776', megapixels=0.6, command=' '.join(cmd[1:]), wall_s=round(wall, 1),
                  cpu_s=round(ru.ru_utime + ru.ru_stime, 1), peak_rss_mb=round(ru.ru_maxrss / 1024), fit_s=round(cfg.get('fit_seconds', float('nan')), 1),
                  under_10_min=wall < 600, device=device_name()))

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--part', choices=('exact', 'tile-fit'), required=True)
    ap.add_argument('--data', default='../shared/data', help='folder holding mvtec_ad/ and magnetic_tile/')
    ap.add_argument('--out', help='results path without extension (default bench/results/coreset or coreset_tile_fit)')
    ap.add_argument('--datasets', default='bottle,magnetic_tile')
    ap.add_argument('--train', type=int, default=100, help='exact: good training images per dataset (the exact greedy is quadratic)')
    ap.add_argument('--images', type=int, default=250, help='tile-fit: images of 0.6 MP')
    ap.add_argument('--work', default='../coreset_tile_fit', help='tile-fit: folder for the generated images and the model (outside the project)')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seed', type=int, default=42)
    ap.add_argument('--note', action='append', default=[], help='a paragraph under the table')
    ap.add_argument('--one', type=json.loads, help=argparse.SUPPRESS)  # internal: one run, in a child process
    a = ap.parse_args()
    if a.one is not None: return (one_exact if a.part == 'exact' else one_tile_fit)(a)
    out = Path(a.out or ('bench/results/coreset' if a.part == 'exact' else 'bench/results/coreset_tile_fit'))
    commit = subprocess.run(['git', 'describe', '--always', '--dirty'], capture_output=True, text=True).stdout.strip()
    rows = []
    for one in ([dict(dataset=d) for d in a.datasets.split(',')] if a.part == 'exact' else [{}]):
        cmd = [sys.executable, __file__, '--part', a.part, '--data', a.data, '--train', a.train, '--images', a.images, '--work', a.work,
               '--threads', a.threads, '--seed', a.seed, '--one', json.dumps(one)]
        p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
        new = [json.loads(l[4:]) for l in p.stdout.splitlines() if l.startswith('ROW ')]
        if p.returncode or not new: sys.exit(f'{one} failed:\n{p.stderr[-3000:]}')
        rows += new
        with open(out.with_suffix('.csv'), 'w', newline='') as f:
            w = csv.DictWriter(f, list(dict.fromkeys(k for r in rows for k in r))); w.writeheader(); w.writerows(rows)
        head = f'`.venv/bin/python {" ".join(sys.argv)}` at commit `{commit}`, {time.strftime("%Y-%m-%d")}, on {rows[0]["device"]}.\n\n'
        out.with_suffix('.md').write_text(f'# {__doc__.splitlines()[0]}\n\n' + head + markdown_table(rows) + ''.join(f'\n{n}\n' for n in a.note))
        print(markdown_table(rows), flush=True)

if __name__ == '__main__': main()
