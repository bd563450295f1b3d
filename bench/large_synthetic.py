"""A generated large-image benchmark (issue 34): whole parts of 2-20 megapixels with small defects at known places.

    .venv/bin/python bench/large_synthetic.py --out ../large_synthetic          # both parts at the default sizes
    .venv/bin/python bench/large_synthetic.py --out /tmp/ls --train 4 --test-good 2 --per-defect 2 --scale 0.25   # a quick look

Each part is made from the shared sets' good images, tiled (so what is normal is real surface or real object), and is
written in the MVTec AD layout, so that `anomaly-fastai bench --data OUT --category PART` and `load_dataset` read it:
`PART/train/good`, `PART/test/good`, `PART/test/<defect>` and `PART/ground_truth/<defect>/<stem>_mask.png` (0/255).

- `long_texture`: Magnetic Tile's defect-free surfaces (its `split.csv`: training images for train, test images for
  test), each resized to a `tile` px square, flipped at random and laid side by side: `rows` x `cols` tiles, a long part.
- `square_objects`: bottle's good images (train/good for train, test/good for test) in a square grid.
- defects, one per test image, at a seeded random place inside the part (never on the outer margin):
  `scratch` a thin line (1-3 px, 80-400 px long, a few bends) darker or lighter by 25-60 grey levels;
  `spot` a small ellipse (3-10 px radii) darker by 40-90; `faint` a soft Gaussian patch (20-60 px across) only 6-12 grey levels off at its centre.
  The mask is where the change is at least half of its peak.

Everything comes from `--seed`: the same command writes the same files. Nothing is tuned on these images: they are a
check with known answers (thin, small, faint defects on large parts), beside the two shared sets.
"""
import argparse, csv, json, math, shutil, sys
from pathlib import Path
import numpy as np
from PIL import Image, ImageDraw

PARTS = {  # name: (source, tile px, rows, cols) at --scale 1: 512 x 4096 (2.1 MP) and 2400 x 2400 (5.8 MP)
    'long_texture': ('magnetic_tile', 256, 2, 16),
    'square_objects': ('bottle', 400, 6, 6),
}
DEFECTS = ('scratch', 'spot', 'faint')

def sources(data: Path, source: str, split: str) -> list[Path]:
    "The good images of the shared set `source` for `split` ('train' or 'test')."
    if source == 'bottle':
        return sorted((data/'mvtec_ad'/'bottle'/split/'good').glob('*.png'))
    root = data/'magnetic_tile'
    rows = csv.DictReader(open(root/'split.csv'))
    return sorted(root/r['image'] for r in rows if r['split'] == split and r['label'] == '0')  # paths relative to the folder of split.csv

def compose(paths: list[Path], tile: int, rows: int, cols: int, rng: np.random.Generator, gray: bool) -> np.ndarray:
    "A part: `rows` x `cols` tiles, each a random one of `paths` resized to `tile` px and flipped at random."
    out = np.zeros((rows * tile, cols * tile) if gray else (rows * tile, cols * tile, 3), np.uint8)
    for r in range(rows):
        for c in range(cols):
            im = Image.open(paths[rng.integers(len(paths))]).convert('L' if gray else 'RGB').resize((tile, tile), Image.BILINEAR)
            a = np.asarray(im)
            if rng.random() < 0.5: a = a[:, ::-1]
            if rng.random() < 0.5: a = a[::-1]
            out[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = a
    return out

def _place(rng, h, w, margin) -> tuple[float, float]:
    "A random point at least `margin` px (at most a quarter of the short side) inside the part."
    m = min(margin, min(h, w) / 4)
    return rng.uniform(m, w - m), rng.uniform(m, h - m)

def defect_layer(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    "The grey-level change (h, w) float of one defect of `kind`, zero elsewhere."
    layer = Image.new('F', (w, h), 0.)
    d = ImageDraw.Draw(layer)
    if kind == 'scratch':
        x, y = _place(rng, h, w, 200)  # it may run out of the part: only what is drawn inside counts
        pts, ang = [(x, y)], rng.uniform(0, math.pi)
        for _ in range(rng.integers(2, 5)):  # a few straight pieces with small bends
            ang += rng.normal(0, 0.25); step = rng.uniform(80, 400) / 3
            x, y = x + step * math.cos(ang), y + step * math.sin(ang); pts.append((x, y))
        d.line(pts, fill=float(rng.choice([-1, 1]) * rng.uniform(25, 60)), width=int(rng.integers(1, 4)))
    elif kind == 'spot':
        x, y = _place(rng, h, w, 50); rx, ry = rng.uniform(3, 10, 2)
        d.ellipse([x - rx, y - ry, x + rx, y + ry], fill=-float(rng.uniform(40, 90)))
    elif kind == 'faint':  # a Gaussian bump: no edge to find, only a slow change of level
        x, y = _place(rng, h, w, 120); r, amp = rng.uniform(20, 60), float(rng.choice([-1, 1]) * rng.uniform(6, 12))
        yy, xx = np.ogrid[:h, :w]
        return (amp * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (r / 2) ** 2))).astype(np.float32)
    else: raise ValueError(f'defect kind: expected one of {DEFECTS}, got {kind!r}')
    return np.asarray(layer, np.float32)

def with_defect(img: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    "`img` with one defect of `kind` added, and its mask (uint8 0/255)."
    change = defect_layer(kind, img.shape[0], img.shape[1], rng)
    while not change.any(): change = defect_layer(kind, img.shape[0], img.shape[1], rng)  # a scratch drawn wholly outside the part
    mask = np.abs(change) >= 0.5 * np.abs(change).max()
    out = img.astype(np.float32) + (change[..., None] if img.ndim == 3 else change)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), (mask * 255).astype(np.uint8)

def write_part(data: Path, out: Path, part: str, n_train: int, n_good: int, per_defect: int, scale: float, seed: int) -> dict:
    "Write one part's dataset under `out`/`part`; its summary."
    source, tile, rows, cols = PARTS[part]
    tile = max(32, round(tile * scale))
    rng = np.random.default_rng([seed, list(PARTS).index(part)])
    gray, root = source == 'magnetic_tile', out/part
    train, test = sources(data, source, 'train'), sources(data, source, 'test')
    if not train or not test: sys.exit(f'{data}: expected the shared {source} images (see ../shared/data/README.md), found none')
    save = lambda a, p: (p.parent.mkdir(parents=True, exist_ok=True), Image.fromarray(a).save(p))
    for i in range(n_train): save(compose(train, tile, rows, cols, rng, gray), root/'train'/'good'/f'{i:03d}.png')
    for i in range(n_good): save(compose(test, tile, rows, cols, rng, gray), root/'test'/'good'/f'{i:03d}.png')
    for kind in DEFECTS:
        for i in range(per_defect):
            img, mask = with_defect(compose(test, tile, rows, cols, rng, gray), kind, rng)
            save(img, root/'test'/kind/f'{i:03d}.png'); save(mask, root/'ground_truth'/kind/f'{i:03d}_mask.png')
    h, w = rows * tile, cols * tile
    return dict(part=part, source=source, size=f'{w}x{h}', megapixels=round(w * h / 1e6, 2), train=n_train, test_good=n_good,
                defects={k: per_defect for k in DEFECTS}, seed=seed, scale=scale)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', default='../shared/data', help='folder holding mvtec_ad/ and magnetic_tile/')
    ap.add_argument('--out', required=True, help='folder to write the parts into (outside the project: never commit it)')
    ap.add_argument('--parts', default=','.join(PARTS), help='comma-separated, from: ' + ', '.join(PARTS))
    ap.add_argument('--train', type=int, default=30, help='good training images per part')
    ap.add_argument('--test-good', type=int, default=10, help='good test images per part')
    ap.add_argument('--per-defect', type=int, default=10, help='test images per defect kind and part')
    ap.add_argument('--scale', type=float, default=1., help='tile size factor (0.25: a quick look; 2: four times the pixels)')
    ap.add_argument('--seed', type=int, default=42)
    ap.add_argument('--force', action='store_true', help='replace the parts already in --out')
    a = ap.parse_args(argv)
    out, data = Path(a.out), Path(a.data)
    parts = a.parts.split(',')
    if unknown := [p for p in parts if p not in PARTS]: sys.exit(f'--parts: unknown {unknown}; expected some of {list(PARTS)}')
    for p in parts:
        if (out/p).exists():
            if not a.force: sys.exit(f'{out/p}: already exists; pass --force to replace it')
            shutil.rmtree(out/p)
    summary = [write_part(data, out, p, a.train, a.test_good, a.per_defect, a.scale, a.seed) for p in parts]
    (out/'large_synthetic.json').write_text(json.dumps(dict(command=' '.join(sys.argv), parts=summary), indent=2))
    for s in summary: print(f"{out/s['part']}: {s['size']} ({s['megapixels']} MP) from {s['source']}, {s['train']} train, "
                            f"{s['test_good']} good and {len(DEFECTS)} x {a.per_defect} defective test images")

if __name__ == '__main__': main()
