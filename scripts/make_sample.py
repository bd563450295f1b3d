"""Build the embedded sample `anomaly_fastai/sample/bottle` from the full MVTec AD bottle category.

Usage: python scripts/make_sample.py ../shared/data/mvtec_ad/bottle
Deterministic: evenly spaced images of each folder (sorted by name), downscaled to 256 px
(images: Lanczos, JPEG q=92 to keep the wheel small; masks: nearest neighbour, PNG 0/255).
"""
import shutil, sys
from pathlib import Path
from PIL import Image

N_TRAIN, N_TEST_GOOD, N_PER_DEFECT, SIZE = 60, 10, 5, 256

def evenly(files, n): return [files[round(i * len(files) / n)] for i in range(n)] if len(files) > n else files

def main(src, dst=Path(__file__).parents[1]/'anomaly_fastai'/'sample'/'bottle'):
    src = Path(src)
    if dst.exists(): shutil.rmtree(dst)
    for sub in sorted(p for p in (src/'train').iterdir()) + sorted(p for p in (src/'test').iterdir()):
        n = N_TRAIN if sub.parent.name == 'train' else N_TEST_GOOD if sub.name == 'good' else N_PER_DEFECT
        for f in evenly(sorted(sub.glob('*.png')), n):
            out = dst/sub.parent.name/sub.name/(f.stem + '.jpg'); out.parent.mkdir(parents=True, exist_ok=True)
            Image.open(f).convert('RGB').resize((SIZE, SIZE), Image.LANCZOS).save(out, quality=92)
            m = src/'ground_truth'/sub.name/f'{f.stem}_mask.png'
            if sub.parent.name == 'test' and m.exists():
                mo = dst/'ground_truth'/sub.name/m.name; mo.parent.mkdir(parents=True, exist_ok=True)
                Image.open(m).convert('L').resize((SIZE, SIZE), Image.NEAREST).save(mo)
    for f in ('license.txt', 'readme.txt'): shutil.copy(src/f, dst/f)

if __name__ == '__main__': main(sys.argv[1])
