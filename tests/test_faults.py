"""Faults of a predict run and of an exported file (issue 35): two runs into one folder, a killed run's lock, torn rows,
a cut or edited predict.json, an edited or corrupt export, float images, long and non-UTF-8 names. Each case asserts
that nothing is lost (the rows end as a whole run writes them) and that nothing is silently wrong (a one-line error
that names the file, or the right answer)."""
import contextlib, csv, errno, io, json, os, shutil, subprocess, sys
from pathlib import Path
import numpy as np, pytest
from PIL import Image
from anomaly_fastai import runtime
from anomaly_fastai.runtime import (LOCK_FILE, PARQUET_FILE, RUN_FILE, CACHE_FILE, META_KEY, ModelError, OutputLocked, PartlyFailed,
                                    cached_session, load, out_lock, predict_files)

onnx = pytest.importorskip('onnx')

@pytest.fixture(scope='module')
def models(tmp_path_factory) -> Path:
    "A small k-NN model folder and its export."
    from anomaly_fastai.data import Preprocess, sample_dataset
    from anomaly_fastai.knn import KNNDetector
    from anomaly_fastai.saving import save_detector
    from anomaly_fastai.export import export_model
    d = tmp_path_factory.mktemp('models')
    save_detector(KNNDetector(pre=Preprocess(64), device='cpu').fit(sample_dataset(), progress=False), d/'model')
    export_model(d/'model', 'onnx', d/'model.onnx')
    return d

@pytest.fixture(scope='module')
def model(models): return load(models/'model.onnx')

@pytest.fixture(scope='module')
def images(tmp_path_factory) -> Path:
    "Four test images of the embedded sample."
    from anomaly_fastai.data import sample_dataset
    d = tmp_path_factory.mktemp('images')
    for s in sample_dataset().test[::7][:4]: shutil.copy(s.path, d/f'{s.label}_{Path(s.path).name}')
    return d

@pytest.fixture(scope='module')
def whole(model, images, tmp_path_factory) -> str:
    "predictions.csv of a run that nothing interrupted."
    return predict_files(model, [images], tmp_path_factory.mktemp('whole')/'out').read_text()

def quiet(fn, *a, **kw):
    "`fn(*a, **kw)` with its stdout and stderr captured: (result or exception, stdout, stderr)."
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        try: r = fn(*a, **kw)
        except Exception as ex: r = ex
    return r, o.getvalue(), e.getvalue()

HOLD = ("import sys, time\nfrom anomaly_fastai import runtime\nlock = runtime.out_lock(sys.argv[1]); lock.__enter__()\n"
        "print('locked', flush=True); time.sleep(120)")

@contextlib.contextmanager
def held(out: Path):
    "Another process holding the lock of `out`; killed (SIGKILL) on the way out, its lock file left behind."
    p = subprocess.Popen([sys.executable, '-c', HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == 'locked'
        yield p
    finally: p.kill(); p.wait()

# --- two runs into one folder, a killed run's lock

def test_second_run_is_refused_whatever_its_flags(model, images, whole, tmp_path):
    out = tmp_path/'out'
    predict_files(model, [images], out)
    with held(out) as p:
        for flags in (dict(), dict(force=True), dict(resume=True)):
            with pytest.raises(OutputLocked, match=f'another run is writing there \\(pid {p.pid} on '): predict_files(model, [images], out, **flags)
        with pytest.raises(OutputLocked): runtime.check_out(out, True)   # what the CLI asks before it reads a model
    assert (out/'predictions.csv').read_text() == whole   # the first run's rows untouched by --force

def test_runtime_cli_refuses_a_locked_folder_in_one_line(models, images, tmp_path):
    with held(tmp_path/'out'):
        r = subprocess.run([sys.executable, '-c', 'from anomaly_fastai import runtime; runtime.main()', '--model', str(models/'model.onnx'),
                            '--out', str(tmp_path/'out'), '--force', str(images)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith('anomaly-fastai-run: error:') and 'another run is writing there' in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr

def test_lock_of_a_killed_run_is_taken_over_and_said(model, images, whole, tmp_path):
    out = tmp_path/'out'
    with held(out) as p: pass   # killed with its lock held: the file stays, the lock goes with the process
    assert str(p.pid) in (out/LOCK_FILE).read_text()
    r, _, err = quiet(predict_files, model, [images], out)
    assert r == out/'predictions.csv' and r.read_text() == whole
    assert err.count('\n') == 1 and f'took over the lock of pid {p.pid}' in err
    assert not (out/LOCK_FILE).exists()   # released at the end

def test_lock_is_released_on_errors_and_resume_finishes(model, images, whole, tmp_path):
    def dies(model, paths, out, root, bs, heatmaps):
        rows = runtime.scored_rows(model, paths, out, root, bs, heatmaps)
        yield next(rows); yield next(rows)
        raise RuntimeError('worker lost')
    out = tmp_path/'out'
    r, _, _ = quiet(predict_files, model, [images], out, scorer=dies)
    assert isinstance(r, RuntimeError) and not (out/LOCK_FILE).exists()
    assert len((out/'predictions.csv').read_text().splitlines()) == 3   # the two rows written before the error are kept
    r, so, _ = quiet(predict_files, model, [images], out, resume=True)
    assert 'resuming: 2 of 4' in so and (out/'predictions.csv').read_text() == whole

def test_unwritable_output_folder_is_refused_before_scoring(model, images, tmp_path):
    (tmp_path/'a_file').write_text('x')
    scored = []
    def scorer(*a): scored.append(1); yield from ()
    with pytest.raises(OSError, match='a_file/out: expected an output folder this process can write to'):
        predict_files(model, [images], tmp_path/'a_file'/'out', scorer=scorer)
    assert not scored

# --- torn rows and what --resume trusts

def cut_points(line: str) -> list[int]:
    "Where to cut a row: either side of each comma, and only its line end."
    return sorted({i + d for i, c in enumerate(line) if c == ',' for d in (0, 1)} | {len(line) // 3, len(line)})

def test_a_row_cut_anywhere_is_scored_again(model, images, whole, tmp_path):
    out = tmp_path/'out'
    predict_files(model, [images], out)
    *rows, last = whole.splitlines()
    for k in cut_points(last):
        (out/'predictions.csv').write_text('\n'.join(rows) + '\n' + last[:k])
        r, so, _ = quiet(predict_files, model, [images], out, resume=True)
        assert r == out/'predictions.csv', (k, r)
        assert f'resuming: {3 + (k == len(last))} of 4' in so, (k, last[:k], so)   # only a row that lost nothing but its line end is kept
        assert r.read_text() == whole, k

def test_nul_bytes_in_the_middle_are_scored_again(model, images, whole, tmp_path):
    out = tmp_path/'out'
    predict_files(model, [images], out)
    lines = whole.splitlines(keepends=True)
    lines[2] = '\0' * (len(lines[2]) - 1) + '\n'   # a block lost to a power loss
    (out/'predictions.csv').write_text(''.join(lines))
    r, so, _ = quiet(predict_files, model, [images], out, resume=True)
    assert 'resuming: 3 of 4' in so and r.read_text() == whole

@pytest.mark.parametrize('loss', ['gone', 'empty', 'cut'])
def test_a_row_whose_heatmap_is_gone_or_cut_is_scored_again(model, images, whole, tmp_path, loss):
    out = tmp_path/'out'
    predict_files(model, [images], out)
    first = next(csv.DictReader(open(out/'predictions.csv')))
    png = out/first['heatmap']; data = png.read_bytes()
    if loss == 'gone': png.unlink()
    else: png.write_bytes(b'' if loss == 'empty' else data[:len(data) // 2])   # what a power loss leaves of a file not yet on disk
    r, so, _ = quiet(predict_files, model, [images], out, resume=True)
    assert 'resuming: 3 of 4' in so and r.read_text() == whole and png.read_bytes() == data

@pytest.mark.parametrize('text', ['', '{"model": "m", "mod', '[1, 2]', '\0\0\0\0', '{"model_id": "x"}'])
def test_a_cut_or_garbage_predict_json_stops_resume_in_one_line(model, images, whole, tmp_path, text):
    out = tmp_path/'out'
    predict_files(model, [images], out)
    (out/RUN_FILE).write_text(text)
    with pytest.raises(ValueError, match=f'{RUN_FILE}: expected the model and heatmap folder predict writes there.*pass --force'):
        predict_files(model, [images], out, resume=True)
    assert (out/'predictions.csv').read_text() == whole and not (out/LOCK_FILE).exists()

def test_resume_removes_a_stale_parquet(model, images, whole, tmp_path):
    out = tmp_path/'out'
    predict_files(model, [images], out)
    (out/PARQUET_FILE).write_bytes(b'rows of a Ray run, now out of date')
    (out/'predictions.csv').write_text('\n'.join(whole.splitlines()[:3]) + '\n')
    quiet(predict_files, model, [images], out, resume=True)
    assert not (out/PARQUET_FILE).exists() and (out/'predictions.csv').read_text() == whole

# --- exported files: one source of truth

def edited(src: Path, dst: Path, raw: str | None = None, **change) -> Path:
    "A copy of the exported file `src` with its metadata changed by `change` (None removes a key), or replaced by `raw`."
    m = onnx.load(str(src))
    p = next(p for p in m.metadata_props if p.key == META_KEY)
    p.value = raw if raw is not None else json.dumps({k: v for k, v in (json.loads(p.value) | change).items() if v is not None})
    onnx.save(m, str(dst))
    return dst

def test_a_threshold_edited_in_the_metadata_is_refused(models, images, tmp_path):
    f = edited(models/'model.onnx', tmp_path/'m.onnx', threshold=999)
    with pytest.raises(ModelError, match="m.onnx: metadata key 'threshold' says 999, but the graph decides with"): load(f)
    r = subprocess.run([sys.executable, '-c', 'from anomaly_fastai import runtime; runtime.main()', '--model', str(f),
                        '--out', str(tmp_path/'out'), str(images)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("anomaly-fastai-run: error:") and 'Traceback' not in r.stderr, r.stderr
    assert not (tmp_path/'out').exists()

def test_an_edited_normalisation_is_refused(model, models, tmp_path):
    norm = model.meta['norm']
    f = edited(models/'model.onnx', tmp_path/'m.onnx', norm=dict(min=norm['min'], max=norm['max'] * 2))
    with pytest.raises(ModelError, match="metadata key 'norm' says .* \\(max - min\\), but the graph decides with"): load(f)

@pytest.mark.parametrize('key', ['threshold', 'preprocess', 'method', 'norm', 'backbone'])
def test_a_missing_metadata_key_is_one_line(models, tmp_path, key):
    with pytest.raises(ModelError, match=f"m.onnx: metadata key '{key}' is missing"): load(edited(models/'model.onnx', tmp_path/'m.onnx', **{key: None}))

@pytest.mark.parametrize('change, msg', [(dict(threshold='0.3'), "metadata key 'threshold': expected a number, found '0.3'"),
                                         (dict(preprocess=dict(mode='warp')), "metadata key 'preprocess': geometry must be one of"),
                                         (dict(preprocess=dict(size=64, colour=1)), "metadata key 'preprocess': .*unexpected keyword argument 'colour'")])
def test_a_wrong_metadata_value_is_one_line(models, tmp_path, change, msg):
    with pytest.raises(ModelError, match=msg): load(edited(models/'model.onnx', tmp_path/'m.onnx', **change))

def test_garbage_metadata_is_one_line(models, tmp_path):
    with pytest.raises(ModelError, match=f"metadata '{META_KEY}': expected a JSON object"): load(edited(models/'model.onnx', tmp_path/'m.onnx', raw='{"method": "kn'))

def test_an_input_size_the_graph_does_not_take_is_one_line(model, models, tmp_path):
    pre = model.meta['preprocess'] | dict(mode='squash', size=128)
    with pytest.raises(ModelError, match="metadata key 'preprocess' gives inputs of 128 x 128 px, but the graph takes 64 x 64"):
        load(edited(models/'model.onnx', tmp_path/'m.onnx', preprocess=pre))

def test_a_corrupt_engine_cache_is_rebuilt(models, model, images, tmp_path):
    from anomaly_fastai.engine import load_engine
    d = shutil.copytree(models/'model', tmp_path/'model')
    load_engine(d)   # writes the cache
    assert cached_session(d) is not None
    (d/CACHE_FILE).write_bytes((d/CACHE_FILE).read_bytes()[:1000])   # cut short (a full disk, a kill mid-copy)
    assert cached_session(d) is None   # not trusted...
    eng = load_engine(d)               # ...so the model folder is exported again
    assert cached_session(d) is not None
    paths = sorted(images.iterdir())
    np.testing.assert_allclose([r['score'] for r in eng.predict(paths)], [r['score'] for r in model.predict(paths)], rtol=1e-5)
    edited(d/CACHE_FILE, d/CACHE_FILE, threshold=0.)   # edited: refused, and rebuilt
    assert cached_session(d) is None

def test_a_model_file_with_capitals_is_a_file(models, images, tmp_path):
    f = shutil.copy(models/'model.onnx', tmp_path/'MODEL.ONNX')
    r, so, err = quiet(runtime.main, ['--model', str(f), '--out', str(tmp_path/'out'), str(images)])
    assert r is None and '4 images scored' in so, err

# --- images and names

def test_a_float_tiff_scores_as_its_8bit_png_and_an_unknown_range_is_an_error_row(model, images, tmp_path):
    src = sorted(images.iterdir())[0]
    g = np.asarray(Image.open(src).convert('L'))
    d = tmp_path/'in'; d.mkdir()
    Image.fromarray(g).save(d/'a.png')
    Image.fromarray(g.astype(np.float32)).save(d/'b.tif')            # float32 holding 0..255
    Image.fromarray(g.astype(np.float32) * 300).save(d/'c.tif')      # up to 76500: no range it could be
    r, _, err = quiet(predict_files, model, [d], tmp_path/'out')
    assert isinstance(r, PartlyFailed) and '1 of 3' in str(r)
    rows = {Path(x['path']).name: x for x in csv.DictReader(open(tmp_path/'out'/'predictions.csv'))}
    assert rows['b.tif']['score'] == rows['a.png']['score'] and rows['b.tif']['label'] == rows['a.png']['label']
    assert 'c.tif: a float image with values' in rows['c.tif']['error'] and rows['c.tif']['score'] == ''

def test_a_255_byte_name_is_scored_and_its_heatmap_name_shortened(model, images, tmp_path):
    d = tmp_path/'in'; d.mkdir()
    long = 'x' * 251 + '.png'
    src = sorted(images.iterdir())
    shutil.copy(src[0], d/long); shutil.copy(src[1], d/'b.png')
    out = tmp_path/'out'
    predict_files(model, [d], out)
    rows = list(csv.DictReader(open(out/'predictions.csv')))
    assert [Path(r['path']).name for r in rows] == ['b.png', long] and all(r['score'] and not r['error'] for r in rows)
    assert (out/rows[1]['heatmap']).is_file() and len(Path(rows[1]['heatmap']).name) <= 255
    r, so, _ = quiet(predict_files, model, [d], out, resume=True)
    assert 'resuming: 2 of 2' in so

def test_a_name_that_is_not_utf8_is_scored_and_written_as_its_bytes(model, images, tmp_path):
    d = tmp_path/'in'; d.mkdir()
    name = os.fsdecode(b'caf\xe9.png')   # Latin-1, as an old camera PC names it
    try: shutil.copy(sorted(images.iterdir())[0], d/name)
    except (OSError, UnicodeError) as e: pytest.skip(f'this file system refuses the name: {e}')
    shutil.copy(sorted(images.iterdir())[1], d/'b.png')
    out = tmp_path/'out'
    r, _, err = quiet(predict_files, model, [d], out)
    assert r == out/'predictions.csv', (r, err)
    raw = (out/'predictions.csv').read_bytes()
    assert b'caf\xe9.png,' in raw and b'caf\xe9.png.png' in raw   # its exact name, and its heatmap's
    assert (out/'heatmaps'/os.fsdecode(b'caf\xe9.png.png')).is_file()
    r, so, _ = quiet(predict_files, model, [d], out, resume=True)
    assert 'resuming: 2 of 2' in so and (out/'predictions.csv').read_bytes() == raw

def test_any_failure_of_one_image_is_its_error_row(model, images, tmp_path, monkeypatch):
    paths = sorted(images.iterdir())
    read, save = runtime.open_image, runtime.save_heatmap
    def open_image(p, mode='RGB'):
        if Path(p) == paths[0]: raise MemoryError('decoder ran out of memory')
        return read(p, mode)
    def save_heatmap(path, image_path, *a):
        if Path(image_path) == paths[1]: raise OSError(errno.ENAMETOOLONG, 'File name too long', str(path))
        return save(path, image_path, *a)
    monkeypatch.setattr(runtime, 'open_image', open_image); monkeypatch.setattr(runtime, 'save_heatmap', save_heatmap)
    r, _, err = quiet(predict_files, model, [images], tmp_path/'out')
    assert isinstance(r, PartlyFailed) and '2 of 4 images could not be scored' in str(r)
    rows = list(csv.DictReader(open(tmp_path/'out'/'predictions.csv')))
    assert f'{paths[0]}: MemoryError: decoder ran out of memory' == rows[0]['error']
    assert rows[1]['error'].startswith(f'{paths[1]}: its heatmap heatmaps/') and 'File name too long' in rows[1]['error'] and rows[1]['score'] == ''
    assert all(r['score'] and not r['error'] for r in rows[2:])
    assert err.count('anomaly-fastai predict: skipped') == 2

def test_a_full_disk_names_the_file(models, tmp_path, monkeypatch):
    from anomaly_fastai.export import export_model
    def full(self, data): raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(Path, 'write_bytes', full)
    with pytest.raises(OSError, match="No space left on device: '.*m.onnx'"): export_model(models/'model', 'onnx', tmp_path/'m.onnx')
    with pytest.raises(OSError, match="No space left on device: '.*predictions.csv'"):
        with runtime._naming(tmp_path/'predictions.csv'): raise OSError(errno.ENOSPC, 'No space left on device')

def test_test_and_bench_take_long_and_non_utf8_names(tmp_path):
    "`test` and `bench` score a data set holding a 244-byte name and a name that is not UTF-8, and write their report."
    from anomaly_fastai.data import sample_path
    from anomaly_fastai.cli import main
    ds = tmp_path/'ds'; shutil.copytree(sample_path(), ds)
    cat = next(p for p in ds.iterdir() if p.is_dir())
    good = sorted((cat/'test'/'good').iterdir())
    try: os.rename(good[0], good[0].with_name(os.fsdecode(b'caf\xff.png')))
    except (OSError, UnicodeError) as e: pytest.skip(f'this file system refuses the name: {e}')
    os.rename(good[1], good[1].with_name('x' * 240 + '.png'))
    args = ['--data', str(ds), '--category', cat.name, '--quiet']
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main(['fit', *args, '--method', 'knn', '--size', '64', '--out', str(tmp_path/'m')])
        main(['test', *args, '--model', str(tmp_path/'m'), '--out', str(tmp_path/'t')])
        main(['bench', *args, '--method', 'knn', '--size', '64', '--out', str(tmp_path/'b')])
    for out in (tmp_path/'t', tmp_path/'b'):
        page = (out/'report.html').read_text(encoding='utf-8')
        assert '\\udcff' in page or 'caf' in page, out
