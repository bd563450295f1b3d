"""How PatchCore's fit time grows with the number of good training images (issue 32).

    .venv/bin/python bench/fit_growth.py [--counts 50,200,1000,5000] [--size 256] [--threads 2] [--max-minutes 30] [--out bench/results/fit_growth]

Training sets of `--counts` images made from bottle's 209 good training images: image i is good image i mod 209 under a
seeded random flip (left-right), a seeded rotation by a multiple of 90 degrees and a seeded rotation of -10..10 degrees
(corners filled with the image's mean border colour), written once as uncompressed BMP files to a temporary folder (the
first N of the largest set make the set of N). Each count is fitted in its own process (its peak memory is its own), with
PatchCore's defaults (MobileNetV2, default geometry, coreset 0.1, exact search), and timed in parts:
- features: from `fit` to the start of the coreset (image reading, the backbone, the (N, h, w, 128) float32 patch array);
- coreset: `greedy_coreset` (cells of at most 8192 rows, greedy k-center on each);
- bank: building the search of the bank; loo: the leave-one-out scores of 64 training images against the whole bank;
- total: `fit_seconds`; peak_rss_mb: the process's peak resident memory; features_mb: the patch array.
A run that goes past `--max-minutes` is stopped and said so; larger counts are then not tried. Then a power law
time = a N^b is fitted on log-log to each part, and the total is projected to 10,000 images.
"""
import argparse, json, math, resource, subprocess, sys, tempfile, time
from datetime import date
from pathlib import Path
import numpy as np, torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import bench_datasets, device_name, emit_row, own_markdown_options, saved_run

PARTS = ('features_s', 'coreset_s', 'bank_s', 'loo_s', 'total_s')
COLUMNS = ['images', 'patches', 'bank_rows', *PARTS, 'features_mb', 'peak_rss_mb', 'input', 'status', 'device']

def commit() -> str:
    h = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True, cwd=HERE).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], capture_output=True, text=True, cwd=HERE).stdout.strip()
    return h + ('-dirty' if dirty else '')

def make_images(paths: list, n: int, folder: Path, seed: int) -> list:
    "`n` augmented copies of `paths` (cycled) as BMP files in `folder`; returns their paths."
    from PIL import Image
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        flip, quarter, angle = rng.integers(2), rng.integers(4), rng.uniform(-10, 10)
        f = folder/f'{i:05d}.bmp'
        if not f.exists():
            im = Image.open(paths[i % len(paths)]).convert('RGB')
            if flip: im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            if quarter: im = im.rotate(90 * int(quarter), expand=False)
            a = np.asarray(im)
            border = tuple(int(v) for v in np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]).mean(0))
            im.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=border).save(f)
        out.append(f)
    return out

def one_run(a):
    "Fit PatchCore on the first `a.one['n']` augmented images, timed in parts; print the row."
    from dataclasses import replace
    import anomaly_fastai.patch as P
    from anomaly_fastai.data import Preprocess
    torch.set_num_threads(a.threads)
    ds = next(bench_datasets(a.data, 'bottle'))
    files = sorted(Path(a.one['folder']).glob('*.bmp'))[:a.one['n']]
    ds = replace(ds, train=[replace(ds.train[0], path=f) for f in files])
    t = dict(loo_s=0.)
    coreset, memory, score = P.greedy_coreset, P.PatchMemory.__init__, P.PatchMemory.score
    def timed_coreset(*args, **kw):
        t['features_end'] = s = time.perf_counter()
        r = coreset(*args, **kw); t['coreset_s'] = time.perf_counter() - s; return r
    def timed_memory(self, *args, **kw):
        s = time.perf_counter(); memory(self, *args, **kw); t['bank_s'] = time.perf_counter() - s
    def timed_score(self, *args, **kw):
        s = time.perf_counter(); r = score(self, *args, **kw); t['loo_s'] += time.perf_counter() - s; return r
    P.greedy_coreset, P.PatchMemory.__init__, P.PatchMemory.score = timed_coreset, timed_memory, timed_score
    det = P.PatchCoreDetector('mobilenet_v2', Preprocess(a.size), seed=a.seed)
    t0 = time.perf_counter()
    det.fit(ds, progress=False)
    h, w = (s // 8 for s in det.pre.input_size)
    patches = len(files) * h * w
    emit_row(dict(images=len(files), patches=patches, bank_rows=len(det.memory), features_s=t['features_end'] - t0,
                  coreset_s=t['coreset_s'], bank_s=t['bank_s'], loo_s=t['loo_s'], total_s=det.fit_seconds,
                  features_mb=patches * det.dim * 4 / 2**20, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  input=f'{det.pre.input_size[0]}x{det.pre.input_size[1]}', status='done', device=device_name()))

def power_law(rows, part) -> tuple[float, float]:
    "(a, b) of time = a N^b, least squares on log-log over the finished rows."
    xs = np.log([r['images'] for r in rows]); ys = np.log([r[part] for r in rows])
    b, log_a = np.polyfit(xs, ys, 1)
    return math.exp(log_a), b

def markdown(rows, a, fits, notes, run=None) -> str:
    "The results table; `run`: (command, commit, date) of the run, when the table is rewritten later (`--notes-only`)."

    def fmt(v):
        if isinstance(v, float): return f'{v:.2f}' if v < 10 else f'{v:.1f}'
        return '' if v is None else str(v)
    head = ['|' + '|'.join(COLUMNS) + '|', '|' + '|'.join(':---' if c in ('input', 'status', 'device') else '---:' for c in COLUMNS) + '|']
    body = ['|' + '|'.join(fmt(r.get(c)) for c in COLUMNS) + '|' for r in rows]
    fit_lines = ['| part | exponent b (time ~ N^b) | seconds at 10,000 images (a 10000^b) |', '|:---|---:|---:|']
    fit_lines += [f'| {p[:-2]} | {b:.2f} | {a_ * 1e4 ** b:.0f} |' for p, (a_, b) in fits.items()]
    cmd, sha, day = run or (' '.join(['.venv/bin/python bench/fit_growth.py'] + sys.argv[1:]), commit(), date.today())
    return '\n'.join([
        "# PatchCore: fit time against the number of training images", '',
        f'`{cmd}` at commit `{sha}`, {day}, on {next((r["device"] for r in rows if r.get("device")), device_name())} (torch {torch.__version__}), torch {a.threads} threads, '
        f'each count in its own process, one after the other. Training images: bottle\'s 209 good images, cycled, each under a seeded '
        'flip, quarter turn and rotation of -10..10 degrees (see the script). PatchCore defaults: MobileNetV2, default geometry '
        f'(short side {a.size}), coreset 0.1 (greedy k-center on cells of at most 8192 rows), exact search, 64 leave-one-out images. Seconds.', '',
        *head, *body, '', 'Power law fitted on log-log over the finished counts:', '', *fit_lines, '', *notes])

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', default='../shared/data')
    ap.add_argument('--out', default='bench/results/fit_growth')
    ap.add_argument('--counts', default='50,200,1000,5000')
    ap.add_argument('--size', type=int, default=256)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seed', type=int, default=42)
    ap.add_argument('--max-minutes', type=float, default=30)
    ap.add_argument('--images', help='folder for the augmented images (default: a temporary folder, deleted at the end)')
    own_markdown_options(ap)
    a = ap.parse_args()
    if a.one: return one_run(a)
    if a.notes_only:
        rows, run = saved_run(a.out)
        done = [r for r in rows if r.get('status') == 'done']
        return Path(a.out).with_suffix('.md').write_text(markdown(rows, a, {p: power_law(done, p) for p in PARTS}, a.note, run) + '\n')
    counts = sorted(int(c) for c in a.counts.split(','))
    tmp = tempfile.TemporaryDirectory(prefix='fit-growth-') if a.images is None else None
    folder = Path(a.images or tmp.name); folder.mkdir(parents=True, exist_ok=True)
    good = [s.path for s in next(bench_datasets(a.data, 'bottle')).train]
    t = time.perf_counter(); make_images(good, counts[-1], folder, a.seed)
    print(f'{counts[-1]} images in {folder} ({time.perf_counter() - t:.0f} s)', flush=True)
    rows, out = [], Path(a.out)
    for n in counts:
        cmd = [sys.executable, __file__, '--data', a.data, '--size', a.size, '--threads', a.threads, '--seed', a.seed,
               '--one', json.dumps(dict(n=n, folder=str(folder)))]
        try:
            p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=a.max_minutes * 60)
            got = [json.loads(l[4:]) for l in p.stdout.splitlines() if l.startswith('ROW ')]
            if p.returncode or not got:
                rows.append(dict(images=n, status=f'failed (exit {p.returncode}): {p.stderr.strip().splitlines()[-1][:120] if p.stderr.strip() else ""}'))
            else: rows += got
        except subprocess.TimeoutExpired:
            rows.append(dict(images=n, status=f'stopped after {a.max_minutes:g} min'))
        print(json.dumps(rows[-1]), flush=True)
        done = [r for r in rows if r.get('status') == 'done']
        fits = {p: power_law(done, p) for p in PARTS} if len(done) >= 2 else {}
        import pandas as pd
        pd.DataFrame(rows, columns=COLUMNS).to_csv(out.with_suffix('.csv'), index=False)
        out.with_suffix('.md').write_text(markdown(rows, a, fits, a.note) + '\n')
        if rows[-1].get('status') != 'done': break
    if tmp is not None: tmp.cleanup()

if __name__ == '__main__': main()
