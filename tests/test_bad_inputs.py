"""Bad input never gives a wrong answer (issue 12): one table of awkward and wrong inputs, each with the exit status
and the message (or the correct numbers) it must give. Cases are numbered by the issue's reproductions (1..12).

Everything is made here from the embedded sample; one small knn model (`m0`) is fitted once and reused. Commands run
in-process (`anomaly_fastai.cli.main`), except where a fresh process is the point (`--help` without torch)."""
import contextlib, csv, io, json, shutil, struct, subprocess, sys, time, zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
import numpy as np
import pytest
from PIL import Image
import anomaly_fastai.data as data
from anomaly_fastai.cli import main
from anomaly_fastai.data import sample_path

BOTTLE = sample_path()/'bottle'
RAISED = -1  # exit "status" of a call that raised (a traceback would be shown): only with --debug


def run(argv) -> tuple[int, str]:
    "Exit status and stdout + stderr of `anomaly-fastai ARGV`, in this process."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: main([str(a) for a in argv]); code = 0
        except SystemExit as e: code = e.code
        except Exception as e: code, err = RAISED, io.StringIO(f'{type(e).__name__}: {e}')
    return code, out.getvalue() + err.getvalue()


@pytest.fixture(scope='module')
def m0(tmp_path_factory):
    "One knn model fitted on the embedded sample (128 px), and what its fit printed."
    d = tmp_path_factory.mktemp('m0')/'model'
    code, text = run(['fit', '--method', 'knn', '--out', d, '--size', 128])
    assert code == 0, text
    return dict(path=d, fit_output=text)


class Ctx:
    "What a case needs: a fresh folder, the shared model, small helpers."
    def __init__(self, tmp: Path, m0: dict): self.tmp, self.m0, self.model = tmp, m0, m0['path']

    def model_copy(self, edit_config=None, state: Optional[bytes] = None) -> Path:
        "A copy of m0, its config.json edited by `edit_config(cfg)`, its state.pt replaced by `state`."
        d = self.tmp/'model_copy'
        shutil.copytree(self.model, d)
        if edit_config:
            cfg = json.loads((d/'config.json').read_text()); edit_config(cfg); (d/'config.json').write_text(json.dumps(cfg))
        if state is not None: (d/'state.pt').write_bytes(state)
        return d

    def images(self, name='imgs', n=2, src=BOTTLE/'test'/'good') -> Path:
        "A folder with the first `n` images of `src`."
        d = self.tmp/name; d.mkdir(parents=True, exist_ok=True)
        for p in sorted(src.iterdir())[:n]: shutil.copy(p, d)
        return d

    def split_csv(self, rows, name='split.csv', encoding='utf-8') -> Path:
        "A split CSV with a header and `rows` (tuples; image paths absolute)."
        f = self.tmp/name
        f.write_text('split,label,defect_type,image,mask\n' + ''.join(','.join(map(str, r)) + '\n' for r in rows), encoding=encoding)
        return f

    def rows(self, csv_file) -> list[dict]: return list(csv.DictReader(open(csv_file, newline='')))


def png16(path, a: np.ndarray):
    "Write a 16-bit PNG (grayscale (H, W) or RGB (H, W, 3) uint16), which Pillow cannot write itself for RGB."
    h, w = a.shape[:2]
    raw = b''.join(b'\x00' + a[i].astype('>u2').tobytes() for i in range(h))
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    Path(path).write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 16, 2 if a.ndim == 3 else 0, 0, 0, 0))
                           + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


def png_claiming(path, w, h):
    "A small PNG whose header says it is `w` x `h` pixels (only headers are read before the size check)."
    Image.new('L', (32, 32)).save(path); b = bytearray(Path(path).read_bytes())
    b[16:24] = struct.pack('>II', w, h); b[29:33] = struct.pack('>I', zlib.crc32(bytes(b[12:29])))
    Path(path).write_bytes(bytes(b)); return Path(path)


def state_bytes(c: Ctx, change) -> bytes:
    "m0's state.pt with its tensors changed by `change(state)`."
    import torch
    st = torch.load(c.model/'state.pt', weights_only=True); change(st)
    buf = io.BytesIO(); torch.save(st, buf); return buf.getvalue()


# ---- the cases' set-ups: each returns the command line to run, or (exit status, text) for checks made in Python

def bit_depths(c):
    "16-bit grayscale/RGB PNG and TIFF copies of a good image score as their 8-bit versions."
    src = sorted((BOTTLE/'test'/'good').iterdir())[0]
    d = c.tmp/'depths'; d.mkdir()
    g8 = np.asarray(Image.open(src).convert('L')); rgb8 = np.asarray(Image.open(src).convert('RGB'))
    Image.fromarray(g8).save(d/'gray8.png'); Image.fromarray(g8.astype(np.uint16) * 257).save(d/'gray16.png')
    Image.fromarray(g8.astype(np.uint16) * 257).save(d/'gray16.tif')
    Image.fromarray(rgb8).save(d/'rgb8.png'); png16(d/'rgb16.png', rgb8.astype(np.uint16) * 257)
    return ['predict', '--model', c.model, '--out', c.tmp/'out', '--no-heatmaps', d]

def same_scores_per_depth(c):
    s = {Path(r['path']).name: float(r['score']) for r in c.rows(c.tmp/'out'/'predictions.csv')}
    assert s['gray16.png'] == pytest.approx(s['gray8.png'], abs=1e-5) and s['gray16.tif'] == pytest.approx(s['gray8.png'], abs=1e-5), s
    assert s['rgb16.png'] == pytest.approx(s['rgb8.png'], abs=1e-5), s
    assert abs(s['gray8.png'] - s['rgb8.png']) < 0.2, s  # and not all white

def strict_json(c):
    def nan(x): raise AssertionError(f'config.json holds {x}')
    cfg = json.loads((c.model/'config.json').read_text(), parse_constant=nan)
    return 0, f'threshold {cfg["threshold"]} finite {np.isfinite(cfg["threshold"])}'

def nan_threshold_refused(c):
    from anomaly_fastai.saving import load_detector, save_detector
    det = load_detector(c.model); det.threshold = float('nan')
    try: save_detector(det, c.tmp/'nan_model')
    except ValueError as e: return 2, str(e)
    return 0, 'saved'

def atomic_save(c):
    "A crash while `fit --force` writes the new model leaves the old one whole and loadable."
    import torch
    from anomaly_fastai.saving import load_detector, save_detector
    d = c.model_copy(); before = (d/'state.pt').read_bytes(), (d/'config.json').read_text()
    det = load_detector(d); det.threshold = det.threshold * 2
    real = torch.save
    def crash(*a, **kw): raise OSError(28, 'No space left on device')
    torch.save = crash
    try: save_detector(det, d, force=True); return 0, 'saved?'
    except OSError as e: msg = str(e)
    finally: torch.save = real
    assert ((d/'state.pt').read_bytes(), (d/'config.json').read_text()) == before
    assert load_detector(d).threshold == json.loads(before[1])['threshold']
    assert not [p for p in d.parent.iterdir() if p.name.startswith('.')], list(d.parent.iterdir())
    return 2, msg

def colliding_names(c):
    data = c.tmp/'part'
    c.images('part/good', n=10)
    for kind in ('scratch', 'dent'): c.images(f'part/{kind}', n=3, src=BOTTLE/'test'/'broken_small')
    return ['test', '--model', c.model, '--data', data, '--out', c.tmp/'t', '--heatmaps', 100]

def heatmaps_all_kept(c):
    files = list((c.tmp/'t'/'heatmaps').rglob('*.png'))
    assert len(files) == 10 // 5 + 2 * 3 and {f.parent.name for f in files} == {'good', 'scratch', 'dent'}, files

def tiny_training_image(c):
    data = c.tmp/'part'; c.images('part/good', n=10); c.images('part/scratch', n=2, src=BOTTLE/'test'/'broken_small')
    Image.new('RGB', (1, 1)).save(sorted((data/'good').iterdir())[1])
    return ['fit', '--method', 'knn', '--data', data, '--out', c.tmp/'m']

def few_images_threshold(c):
    cfg = json.loads((c.model/'config.json').read_text())
    assert cfg['threshold_rule']['n_good'] == 60 and 'warning' in cfg['threshold_rule'], cfg['threshold_rule']
    return 0, c.m0['fit_output']

def train_only_csv(c, command):
    f = c.split_csv([('train', 0, 'good', p, '') for p in sorted((BOTTLE/'train'/'good').iterdir())[:5]])
    if command == 'test': return ['test', '--model', c.model, '--data', f, '--out', c.tmp/'t']
    return ['bench', '--method', 'knn', '--data', f, '--out', c.tmp/'b']

def mixed_folder(c):
    "Two good images, a text file, a truncated JPEG, a 1x1 image and a PNG whose header claims 600 MP."
    d = c.images('mixed', n=2)
    (d/'notes.png').write_text('not an image')
    src = sorted((BOTTLE/'test'/'good').iterdir())[2].read_bytes(); (d/'truncated.jpg').write_bytes(src[:len(src) // 3])
    Image.new('RGB', (1, 1)).save(d/'tiny.png'); png_claiming(d/'huge.png', 30000, 20000)
    return ['predict', '--model', c.model, '--out', c.tmp/'p', d]

def mixed_rows(c):
    rows = {Path(r['path']).name: r for r in c.rows(c.tmp/'p'/'predictions.csv')}
    assert len(rows) == 6
    good = sorted(p.name for p in (BOTTLE/'test'/'good').iterdir())[:2]
    assert all(rows[n]['score'] and not rows[n]['error'] for n in good), rows
    assert 'expected at most 500 MP' in rows['huge.png']['error'] and 'expected at least 32 px' in rows['tiny.png']['error']
    assert all(rows[n]['error'] and not rows[n]['score'] for n in ('notes.png', 'truncated.jpg', 'tiny.png', 'huge.png')), rows

def huge_in_dataset(c):
    data = c.tmp/'part'; c.images('part/good', n=4); c.images('part/scratch', n=1, src=BOTTLE/'test'/'broken_small')
    png_claiming(data/'good'/'zz_huge.png', 30000, 20000)
    return ['fit', '--method', 'knn', '--data', data, '--out', c.tmp/'m']

def pillow_limit_lifted(c):
    return 0, str(data.check_image(png_claiming(c.tmp/'180mp.png', 15000, 12000)))

def force_replaces_own_outputs(c):
    out, data = c.tmp/'t', c.tmp/'part'
    c.images('part/good', n=5); c.images('part/scratch', n=2, src=BOTTLE/'test'/'broken_small')
    code, text = run(['test', '--model', c.model, '--data', data, '--out', out, '--heatmaps', 3])
    assert code == 0 and len(list((out/'heatmaps').rglob('*.png'))) == 3, text
    (out/'keep.txt').write_text('mine')
    return ['test', '--model', c.model, '--data', data, '--out', out, '--heatmaps', 1, '--force']

def only_new_heatmaps(c):
    assert len(list((c.tmp/'t'/'heatmaps').rglob('*.png'))) == 1 and (c.tmp/'t'/'keep.txt').read_text() == 'mine'

def out_inside_input(c):
    d = c.images('imgs', n=3)
    code, text = run(['predict', '--model', c.model, '--out', d/'pred', d])
    assert code == 0, text
    return ['predict', '--model', c.model, '--out', d/'pred', '--force', d]

def three_rows(c): assert len(c.rows(c.tmp/'imgs'/'pred'/'predictions.csv')) == 3

def dataset_root(c):
    root = c.tmp/'mvtec'
    shutil.copytree(BOTTLE/'test'/'broken_large', root/'bottle'/'test'/'broken_large')
    shutil.copytree(BOTTLE/'ground_truth'/'broken_large', root/'bottle'/'ground_truth'/'broken_large')
    return ['predict', '--model', c.model, '--out', c.tmp/'p', '--no-heatmaps', root]

def no_mask_rows(c):
    rows = c.rows(c.tmp/'p'/'predictions.csv')
    assert len(rows) == 5 and not any('ground_truth' in r['path'] for r in rows), rows

def fit_force_other_files(c):
    d = c.tmp/'notes'; d.mkdir(); (d/'notes.txt').write_text('mine')
    return ['fit', '--method', 'knn', '--out', d, '--force']

def label_2_before_fit(c):
    goods = sorted((BOTTLE/'train'/'good').iterdir())[:5]
    f = c.split_csv([('train', 0, 'good', goods[0], ''), ('train', 2, 'good', goods[1], '')])
    c.t0 = time.perf_counter()
    return ['fit', '--method', 'knn', '--data', f, '--out', c.tmp/'m']

def quick_and_nothing_written(c):
    assert time.perf_counter() - c.t0 < 20 and not (c.tmp/'m').exists()

def nothing_benched(c): assert not (c.tmp/'b').exists()

def small_split(c, encoding='utf-8', label=None) -> Path:
    goods = sorted((BOTTLE/'train'/'good').iterdir())[:3]
    rows = [('train', 0, 'good', p, '') for p in goods] + [('test', 0, 'good', p, '') for p in sorted((BOTTLE/'test'/'good').iterdir())[:2]]
    rows += [('test', 1, 'broken_large', p, BOTTLE/'ground_truth'/'broken_large'/f'{p.stem}_mask.png') for p in sorted((BOTTLE/'test'/'broken_large').iterdir())[:2]]
    if label is not None: rows[0] = ('train', label) + rows[0][2:]
    return c.split_csv(rows, encoding=encoding)

def predict_sample_test(c):
    return ['predict', '--model', c.model, '--out', c.tmp/'p', '--no-heatmaps', BOTTLE/'test'/'good', BOTTLE/'test'/'broken_large']

def norm_scale(c):
    from anomaly_fastai.saving import load_detector
    rows = c.rows(c.tmp/'p'/'predictions.csv')
    assert len(rows) == 15 and all(0 <= float(r['norm_score']) <= 1 for r in rows)
    assert all((float(r['norm_score']) > 0.5) == (r['label'] == 'anomaly') for r in rows), rows
    assert sum(r['label'] == 'anomaly' for r in rows[10:]) >= 4  # the broken bottles are flagged
    det = load_detector(c.model)
    assert float(det.normalize([det.threshold])[0]) == 0.5

def resume_run(c):
    args = predict_sample_test(c)
    code, text = run(args); assert code == 0, text
    f = c.tmp/'p'/'predictions.csv'; lines = f.read_text().splitlines()
    c.before = [r['path'] for r in c.rows(f)]
    f.write_text('\n'.join(lines[:6]) + '\n')  # interrupted after 5 images
    return args + ['--resume']

def resumed_rows(c): assert [r['path'] for r in c.rows(c.tmp/'p'/'predictions.csv')] == c.before

def help_without_torch(c):
    code = ("import sys, time; t = time.perf_counter(); from anomaly_fastai.cli import main\n"
            "try: main(['--help'])\nexcept SystemExit: pass\n"
            "print('torch imported:', 'torch' in sys.modules, 'seconds:', round(time.perf_counter() - t, 2))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr

def truncated_config(c):
    m = c.model_copy(); (m/'config.json').write_text((c.model/'config.json').read_text()[:150])
    return ['test', '--model', m, '--out', c.tmp/'t']

def debug_traceback(c): return ['test', '--model', c.tmp/'nowhere', '--out', c.tmp/'t', '--debug']


@dataclass
class Case:
    id: str
    make: Callable          # Ctx -> argv (run in-process), or (exit status, text)
    code: int               # expected exit status (RAISED: an exception propagates, as with --debug)
    expect: str             # in stdout + stderr
    then: Optional[Callable] = None  # Ctx -> None: the correct numbers, files written or left alone


M = lambda c: c.model
CASES = [
    # 1. 16-bit PNGs and TIFFs are scaled by their bit depth, not read as white
    Case('1-16bit-png-tiff-score-as-8bit', bit_depths, 0, '5 images scored', same_scores_per_depth),
    # 2. --k 0 (NaN threshold) and --k larger than the training set are refused before fitting; JSON is strict
    Case('2-k-zero', lambda c: ['fit', '--method', 'knn', '--k', 0, '--out', c.tmp/'m'], 2, 'argument --k: k must be an integer >= 1, got 0'),
    Case('2-k-not-below-training-set', lambda c: ['fit', '--method', 'knn', '--k', 60, '--out', c.tmp/'m'], 2,
         'expected fewer neighbours than good training images, found 60 in bottle', lambda c: not (c.tmp/'m').exists() or pytest.fail('fitted')),
    Case('2-config-is-strict-json', strict_json, 0, 'finite True'),
    Case('2-nan-threshold-never-saved', nan_threshold_refused, 2, 'not a finite number'),
    # 3. a state.pt that does not match config.json, or an edited config.json, is refused
    Case('3-state-of-another-model', lambda c: ['test', '--model', c.model_copy(state=state_bytes(c, lambda s: s.update(train_emb=s['train_emb'][:, :320]))), '--out', c.tmp/'t'],
         2, 'state.pt: is not the state saved with config.json (tensors train_emb [60, 320] (expected [60, 1280])'),
    Case('3-state-same-shapes-other-values', lambda c: ['test', '--model', c.model_copy(state=state_bytes(c, lambda s: s.update(train_emb=s['train_emb'].flip(0)))), '--out', c.tmp/'t'],
         2, 'same tensor shapes, other values'),
    Case('3-config-size-edited', lambda c: ['test', '--model', c.model_copy(lambda cfg: cfg['preprocess'].update(size=256)), '--out', c.tmp/'t'],
         2, 'config.json: preprocess was changed after fitting (preprocess.size 128 -> 256)'),
    Case('3-config-backbone-edited', lambda c: ['test', '--model', c.model_copy(lambda cfg: cfg.update(backbone='efficientnet_lite0')), '--out', c.tmp/'t'],
         2, "backbone 'mobilenet_v2' -> 'efficientnet_lite0'"),
    # 4. saving is atomic
    Case('4-crash-while-saving-keeps-old-model', atomic_save, 2, 'No space left on device'),
    # 5. heatmap names never collide
    Case('5-heatmap-names-never-collide', colliding_names, 0, '8 heatmaps', heatmaps_all_kept),
    # 6. tiny training images; a threshold resting on one or two images is reported
    Case('6-1x1-training-image', tiny_training_image, 2, 'image is 1 x 1 pixels; expected at least 32 px on its short side'),
    Case('6-threshold-on-few-images-warns', few_images_threshold, 0,
         'anomaly-fastai fit: warning: the threshold rests on the two highest scores of the 60 good training images'),
    # 7. no traceback for ordinary input
    Case('7-train-only-csv-in-test', lambda c: train_only_csv(c, 'test'), 2, 'expected test images to evaluate on'),
    Case('7-train-only-csv-in-bench', lambda c: train_only_csv(c, 'bench'), 2, 'expected test images to evaluate on', nothing_benched),
    Case('7-config-missing-key', lambda c: ['test', '--model', c.model_copy(lambda cfg: cfg.pop('norm')), '--out', c.tmp/'t'], 2,
         "config.json: expected the key 'norm' (written by anomaly-fastai fit), not found"),
    Case('7-empty-state', lambda c: ['test', '--model', c.model_copy(state=b''), '--out', c.tmp/'t'], 2, 'state.pt: is empty (0 bytes)'),
    Case('7-empty-state-old-model', lambda c: ['test', '--model', c.model_copy(lambda cfg: cfg.pop('fingerprint'), state=b''), '--out', c.tmp/'t'], 2,
         'state.pt: expected the PyTorch state written by anomaly-fastai fit, cannot read it (EOFError'),
    Case('7-bs-zero', lambda c: ['predict', '--model', c.model, '--bs', 0, '--out', c.tmp/'p', BOTTLE/'test'/'good'], 2,
         "argument --bs: expected an integer >= 1, found '0'"),
    Case('7-over-500mp-in-dataset', huge_in_dataset, 2, 'zz_huge.png: image is 30000 x 20000 (600 MP); expected at most 500 MP'),
    Case('7-180mp-header-accepted', pillow_limit_lifted, 0, '(15000, 12000)'),
    Case('7-debug-shows-the-error', debug_traceback, RAISED, 'FileNotFoundError'),
    # 8. one unreadable file does not abort predict
    Case('8-predict-goes-past-bad-files', mixed_folder, 1, '4 of 6 images could not be scored', mixed_rows),
    # 9. --force replaces only this tool's outputs; predict never reads its own outputs or masks
    Case('9-force-removes-stale-heatmaps', force_replaces_own_outputs, 0, '1 heatmaps', only_new_heatmaps),
    Case('9-out-inside-input-not-rescored', out_inside_input, 0, 'skipped 3 files', three_rows),
    Case('9-dataset-root-masks-skipped', dataset_root, 0, 'skipped 5 files in mask folders', no_mask_rows),
    Case('9-fit-force-keeps-other-files', fit_force_other_files, 2, 'refusing to delete them',
         lambda c: (c.tmp/'notes'/'notes.txt').read_text() == 'mine' or pytest.fail('deleted')),
    Case('9-no-force-no-overwrite', lambda c: ['predict', '--model', c.model, '--out', c.images('full', n=1), BOTTLE/'test'/'good'], 2,
         'output directory is not empty; pass --force'),
    # 10. checks come before the slow part
    Case('10-frr-out-of-range', lambda c: ['fit', '--method', 'knn', '--frr', 1.5, '--out', c.tmp/'m'], 2, "argument --frr: expected a number in [0, 1), found '1.5'"),
    Case('10-k-negative', lambda c: ['fit', '--method', 'knn', '--k', -1, '--out', c.tmp/'m'], 2, 'argument --k: k must be an integer >= 1, got -1'),
    Case('10-csv-label-2-before-fit', label_2_before_fit, 2, "split.csv line 3: label must be 0 (good) or 1 (anomalous), found '2'", quick_and_nothing_written),
    Case('10-bench-bad-category-before-any-fit', lambda c: ['bench', '--method', 'knn', '--data', sample_path(), '--category', 'bottle,botle', '--out', c.tmp/'b'], 2,
         'botle: expected a category folder "botle"', nothing_benched),
    Case('10-size-too-small', lambda c: ['fit', '--method', 'knn', '--size', 8, '--out', c.tmp/'m'], 2, "argument --size: expected an integer >= 32, found '8'"),
    Case('10-heatmaps-negative', lambda c: ['test', '--model', c.model, '--heatmaps', -1, '--out', c.tmp/'t'], 2, "argument --heatmaps: expected an integer >= 0, found '-1'"),
    Case('10-val-without-defects', lambda c: ['fit', '--method', 'knn', '--val', c.split_csv([('train', 0, 'good', p, '') for p in sorted((BOTTLE/'train'/'good').iterdir())[:3]]
                                                                          + [('test', 0, 'good', p, '') for p in sorted((BOTTLE/'test'/'good').iterdir())[:2]]), '--out', c.tmp/'m'], 2,
         'expected good and anomalous test images to set the threshold on, found only good ones (2)'),
    # 11. clear messages
    Case('11-excel-bom-csv-reads', lambda c: ['test', '--model', c.model, '--data', small_split(c, 'utf-8-sig'), '--out', c.tmp/'t', '--heatmaps', 0], 0, 'image_auroc'),
    Case('11-header-only-csv', lambda c: ['test', '--model', c.model, '--data', c.split_csv([]), '--out', c.tmp/'t'], 2, 'split.csv: has a header line but no rows'),
    Case('11-label-yes', lambda c: ['test', '--model', c.model, '--data', small_split(c, label='yes'), '--out', c.tmp/'t'], 2,
         "split.csv line 2: label must be 0 (good) or 1 (anomalous), found 'yes'"),
    Case('11-missing-data-path', lambda c: ['fit', '--method', 'knn', '--data', c.tmp/'no'/'such', '--out', c.tmp/'m'], 2, 'such: expected a dataset'),
    Case('11-missing-data-path-says-so', lambda c: ['test', '--model', c.model, '--data', c.tmp/'nope.csv', '--out', c.tmp/'t'], 2, 'nope.csv: expected a dataset'),
    Case('11-truncated-config', truncated_config,
         2, 'model_copy/config.json: expected the JSON model configuration written by anomaly-fastai fit, but it is not valid JSON'),
    # 12. norm_score: 0.5 at the threshold
    Case('12-norm-score-half-at-threshold', predict_sample_test, 0, '15 images scored', norm_scale),
    # more
    Case('predict-resume', resume_run, 0, 'resuming: 5 of 15 images are already', resumed_rows),
    Case('predict-resume-and-force', lambda c: ['predict', '--model', c.model, '--out', c.tmp/'p', '--resume', '--force', BOTTLE/'test'/'good'], 2,
         '--resume and --force: expected one of them'),
    Case('out-is-a-file', lambda c: ['test', '--model', c.model, '--out', c.split_csv([], name='file.txt')], 2, 'file.txt: expected an output folder, found a file'),
    Case('tile-not-multiple-of-32', lambda c: ['fit', '--method', 'knn', '--tile', 100, '--out', c.tmp/'m'], 2, 'tile must be a multiple of 32 pixels'),
    Case('help-imports-no-torch', help_without_torch, 0, 'torch imported: False'),
]


@pytest.mark.parametrize('case', CASES, ids=[c.id for c in CASES])
def test_bad_input(case, m0, tmp_path):
    c = Ctx(tmp_path, m0)
    made = case.make(c)
    code, text = made if isinstance(made, tuple) else run(made)
    assert code == case.code, f'exit status {code}, expected {case.code}:\n{text}'
    assert case.expect in text, text
    if case.code == 2 and not isinstance(made, tuple):  # one line naming the problem, no traceback
        assert 'Traceback' not in text and len([l for l in text.splitlines() if 'error:' in l]) == 1, text
    if case.then: case.then(c)


def test_every_issue_case_has_a_row():
    assert {c.id.split('-')[0] for c in CASES} >= {str(i) for i in range(1, 13)}
