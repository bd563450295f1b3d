"""The default method and resolution, chosen by a rule written before the run (issue 34).

    .venv/bin/python bench/large_synthetic.py --out ../large_synthetic --scale 0.5     # the generated set, once
    .venv/bin/python bench/resolution.py --generated ../large_synthetic                 # -> bench/results/resolution.md|csv

Every competing row runs `anomaly-fastai bench` as a whole process (fit, then test with the engine `predict` uses) on
bottle, Magnetic Tile (its split.csv) and the two parts of the generated set. `--size auto` rows whose plan is the
whole image at the default size are the same run as the row without it, and are not run twice.

RULE (fixed before any row ran):
1. Rows: knn (today's default, kept as the fast baseline whatever wins), patchcore, padim, patchcore+padim (fusion,
   combine mean), and each of them with `--size auto` (the resolution policy). MobileNetV2, every other option at its
   default. Twin-tuned features are not rows: a twin costs minutes to hours of training per set on 2 cores and lost in
   two of the four combinations measured on held-out data (issue 34); the flow trains per set too.
2. Fit budget: a row whose fit takes over 15 minutes on any set (2 CPU cores) is out.
3. Floors: a row whose image AUROC on bottle or on Magnetic Tile is more than 0.005 below the best row there is out.
4. Rank: mean image AUROC over three sets: bottle, Magnetic Tile, and the generated set (the mean of its two parts).
   Within 0.001 of the best, the faster fit wins (fit seconds summed over the four runs). The winner becomes the
   default of `fit` and `bench`; if no row passes 2 and 3, the default stays knn.
5. The generated set's goal (image AUROC >= 0.95 with no flag) is reported for the winner; it is not a floor, so
   that one set alone cannot pick the default.
"""
import argparse, csv, os, subprocess, sys, tempfile, time
from pathlib import Path
from common import markdown_table

METHODS = ('knn', 'patchcore', 'padim', 'patchcore+padim')
FIT_BUDGET_S, FLOOR, TIE = 15 * 60, 0.005, 0.001

def sets(data: Path, generated: Path) -> dict:
    "name: the bench options that read it."
    return {'bottle': ['--data', data/'mvtec_ad', '--category', 'bottle'],
            'magnetic_tile': ['--data', data/'magnetic_tile'/'split.csv'],
            'long_texture': ['--data', generated, '--category', 'long_texture'],
            'square_objects': ['--data', generated, '--category', 'square_objects']}

def whole_at_default(opts: list) -> tuple[bool, str]:
    "Whether `--size auto` lays this set out as the whole image at the default size (then its row is the plain one), and why."
    from anomaly_fastai.data import load_dataset
    from anomaly_fastai.tiling import resolution_plan
    data = opts[opts.index('--data') + 1]; cat = opts[opts.index('--category') + 1] if '--category' in opts else None
    plan = resolution_plan(load_dataset(data, cat))
    return plan.tile is None and plan.size == 256, plan.reason

def run(cli: Path, opts: list, method: str, auto: bool) -> dict:
    "One `anomaly-fastai bench` process: its results row, wall seconds and peak memory."
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)/'out'
        cmd = [str(cli), 'bench', *map(str, opts), '--method', method, *(['--size', 'auto'] if auto else []), '--heatmaps', '0', '--out', str(out), '--quiet']
        t = time.perf_counter()
        with open(Path(tmp)/'stderr.txt', 'w+') as err:
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
            _, status, ru = os.wait4(p.pid, 0)  # this child's own peak memory
            p.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - t
            if p.returncode: err.seek(0); sys.exit(f'{" ".join(cmd)} failed:\n{err.read()[-3000:]}')
        row = next(csv.DictReader(open(out/'results.csv')))
    return row | dict(wall_s=round(wall, 1), peak_rss_mb=round(ru.ru_maxrss / 1024))

def decide(rows: list[dict]) -> tuple[str, list[str]]:
    "The winner by the rule, and the lines that show each step."
    by = {}
    for r in rows: by.setdefault(r['row'], {})[r['set']] = r
    auroc = lambda row, s: float(by[row][s]['image_auroc'])
    best = {s: max(auroc(row, s) for row in by) for s in ('bottle', 'magnetic_tile')}
    lines, kept = [], []
    head = ['| row | bottle | magnetic_tile | generated (mean of parts) | mean | fit s (all sets) | rule |', '|:---|---:|---:|---:|---:|---:|:---|']
    for row, per in by.items():
        slow = [s for s, r in per.items() if float(r['fit_s']) > FIT_BUDGET_S]
        low = [s for s in best if auroc(row, s) < best[s] - FLOOR]
        gen = (auroc(row, 'long_texture') + auroc(row, 'square_objects')) / 2
        mean = (auroc(row, 'bottle') + auroc(row, 'magnetic_tile') + gen) / 3
        fit = sum(float(r['fit_s']) for r in per.values())
        why = ([f'fit over {FIT_BUDGET_S // 60} min on {", ".join(slow)}'] if slow else []) + ([f'below the floor on {", ".join(low)}'] if low else [])
        lines.append(f'| {row} | {auroc(row, "bottle"):.4f} | {auroc(row, "magnetic_tile"):.4f} | {gen:.4f} | {mean:.4f} | {fit:.0f} | {"; ".join(why) or "in"} |')
        if not why: kept.append((mean, -fit, row))
    if not kept: return 'knn (no row passed the budget and the floors: the default is kept)', head + lines
    top = max(m for m, _, _ in kept)
    winner = max((f, r) for m, f, r in kept if m >= top - TIE)[1]
    return winner, head + lines

def _number(v):
    "A CSV cell as a number where it is one."
    try: return int(v) if str(v).isdigit() else float(v) if v not in (None, '') else v
    except ValueError: return v

def write(out: Path, rows: list[dict], command: str, commit: str, notes: list[str]):
    with open(out.with_suffix('.csv'), 'w', newline='') as f:
        w = csv.DictWriter(f, list(dict.fromkeys(k for r in rows for k in r))); w.writeheader(); w.writerows(rows)
    cols = ['set', 'row', 'method', 'image_auroc', 'pixel_auroc', 'pro', 'fit_s', 'images_per_s', 'wall_s', 'peak_rss_mb', 'same_as']
    text = [f'# {__doc__.splitlines()[0]}', '', f'`{command}` at commit `{commit}`, {time.strftime("%Y-%m-%d")}, on CPU (2 cores), '
            'MobileNetV2. Each row is one `anomaly-fastai bench` process; image / pixel AUROC and PRO over whole images; fit and '
            'wall seconds; test images/s; peak RSS of the process.', '', '## The rule (written before the run)', '',
            __doc__.split('RULE (fixed before any row ran):\n')[1].strip(), '']
    if {'long_texture', 'square_objects'} <= {r['set'] for r in rows} and len({r['row'] for r in rows}) * 4 == len(rows):
        winner, lines = decide(rows)
        text += ['## Decision', '', *lines, '', f'**Winner: `{winner}`.**', '']
    text += ['## Rows', '', markdown_table([{c: _number(r.get(c)) for c in cols} for r in rows], cols), *(f'{n}\n' for n in notes)]
    out.with_suffix('.md').write_text('\n'.join(text))

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', default='../shared/data', help='folder holding mvtec_ad/ and magnetic_tile/')
    ap.add_argument('--generated', default='../large_synthetic', help='the generated set (bench/large_synthetic.py --out)')
    ap.add_argument('--out', default='bench/results/resolution')
    ap.add_argument('--sets', default='bottle,magnetic_tile,long_texture,square_objects')
    ap.add_argument('--methods', default=','.join(METHODS))
    ap.add_argument('--note', action='append', default=[], help='a paragraph under the table')
    ap.add_argument('--append', action='store_true', help='keep the rows already in --out.csv and run only the missing ones')
    a = ap.parse_args()
    out, cli = Path(a.out), Path(sys.executable).parent/'anomaly-fastai'
    commit = subprocess.run(['git', 'describe', '--always', '--dirty'], capture_output=True, text=True).stdout.strip()
    rows = list(csv.DictReader(open(out.with_suffix('.csv')))) if a.append and out.with_suffix('.csv').exists() else []
    done = {(r['set'], r['row']) for r in rows}
    everything = sets(Path(a.data), Path(a.generated))
    for name in a.sets.split(','):
        opts = everything[name]
        whole, reason = whole_at_default(opts)
        print(f'{name}: --size auto: {reason}', flush=True)
        for method in a.methods.split(','):
            for auto in (False, True):
                label = method + (' --size auto' if auto else '')
                if (name, label) in done: continue
                if auto and whole:
                    plain = next(r for r in rows if r['set'] == name and r['row'] == method)
                    rows.append(plain | dict(row=label, same_as=method, plan=reason))
                else:
                    rows.append(dict(set=name, row=label) | run(cli, opts, method, auto) | dict(plan=reason if auto else ''))
                print(rows[-1], flush=True)
                write(out, rows, ' '.join(['.venv/bin/python', *sys.argv]), commit, a.note)

if __name__ == '__main__': main()
