"The generated large-image benchmark (`bench/large_synthetic.py`): written in the MVTec layout, masks where the defects are, the same files from the same seed."
import hashlib, importlib.util, sys
from pathlib import Path
import numpy as np
from PIL import Image
from anomaly_fastai.data import load_dataset

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location('large_synthetic', ROOT/'bench'/'large_synthetic.py')
gen = importlib.util.module_from_spec(spec); spec.loader.exec_module(gen)

def fake_shared(d: Path) -> Path:
    "A stand-in for ../shared/data: a few bottle-like RGB images and Magnetic-Tile-like gray ones with their split.csv."
    rng = np.random.default_rng(0)
    for split in ('train', 'test'):
        f = d/'mvtec_ad'/'bottle'/split/'good'; f.mkdir(parents=True)
        for i in range(3): Image.fromarray(rng.integers(60, 200, (80, 80, 3), dtype=np.uint8)).save(f/f'{i}.png')
    mt = d/'magnetic_tile'; (mt/'magnetic_tile'/'MT_Free'/'Imgs').mkdir(parents=True)
    rows = ['split,label,defect_type,image,mask']
    for i in range(6):
        Image.fromarray(rng.integers(60, 200, (50, 70), dtype=np.uint8)).save(mt/'magnetic_tile'/'MT_Free'/'Imgs'/f'{i}.jpg')
        rows.append(f'{"test" if i % 3 == 0 else "train"},0,good,magnetic_tile/MT_Free/Imgs/{i}.jpg,')
    (mt/'split.csv').write_text('\n'.join(rows) + '\n')
    return d

def digest(folder: Path) -> str:
    return hashlib.sha256(b''.join(p.relative_to(folder).as_posix().encode() + p.read_bytes() for p in sorted(folder.rglob('*.png')))).hexdigest()

def test_generated_parts(tmp_path):
    data = fake_shared(tmp_path/'shared')
    args = ['--data', str(data), '--train', '2', '--test-good', '1', '--per-defect', '2', '--scale', '0.25']
    gen.main([*args, '--out', str(tmp_path/'a')]); gen.main([*args, '--out', str(tmp_path/'b')])
    assert digest(tmp_path/'a') == digest(tmp_path/'b')  # the seed decides everything
    for part, (_, tile, rows, cols) in gen.PARTS.items():
        ds = load_dataset(tmp_path/'a', part)
        assert (len(ds.train), len(ds.test)) == (2, 1 + 2 * len(gen.DEFECTS))
        for s in ds.test:
            im = Image.open(s.path)
            t = max(32, round(tile * 0.25))
            assert im.size == (cols * t, rows * t)
            if s.label:  # one defect, its mask non-empty, covering a small share of the part
                m = np.asarray(Image.open(s.mask)) > 0
                assert 0 < m.mean() < 0.05, (s.path, m.mean())

def test_refuses_to_overwrite(tmp_path, capsys):
    data = fake_shared(tmp_path/'shared')
    args = ['--data', str(data), '--train', '1', '--test-good', '1', '--per-defect', '1', '--scale', '0.25', '--out', str(tmp_path/'o'), '--parts', 'long_texture']
    gen.main(args)
    try: gen.main(args); raise AssertionError('expected a refusal')
    except SystemExit as e: assert 'already exists; pass --force' in str(e)
    gen.main([*args, '--force'])
