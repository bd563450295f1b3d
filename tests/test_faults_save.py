"""Faults around a saved model (issue 35): a save killed or failing at any step, a full disk, a read-only place, an edited
config.json, the `threshold` command, `--model X.ONNX`. Each case asserts that nothing is lost and nothing is silently wrong."""
import contextlib, hashlib, io, json, os, re, shutil, subprocess, sys, warnings
from pathlib import Path
import pytest, torch
from anomaly_fastai import saving
from anomaly_fastai.cli import main
from anomaly_fastai.data import Preprocess, sample_dataset, sample_path
from anomaly_fastai.knn import KNNDetector
from anomaly_fastai.saving import GUARDED, MACHINE, SAVE_STEPS, load_detector, recover, save_detector, set_threshold

USER_FILES = ['config.json', 'notes.txt', 'state.pt', 'sub']

@pytest.fixture(scope='module')
def models(tmp_path_factory) -> dict:
    "Two small k-NN models of the embedded sample, saved: 'A', and 'B' (a multi-scale embedding): another state, another threshold."
    ds, root = sample_dataset(), tmp_path_factory.mktemp('models')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return {k: save_detector(KNNDetector(pre=Preprocess(64), scales=scales, device='cpu').fit(ds, progress=False), root/k)
                for k, scales in (('A', (1.,)), ('B', (1., .5)))}

def target(tmp_path: Path, models: dict, k: str = 'A') -> Path:
    "A model folder `M` holding model `k` and the user's own files."
    m = tmp_path/'M'; shutil.copytree(models[k], m)
    (m/'notes.txt').write_text('mine'); (m/'sub').mkdir(); (m/'sub'/'deep.bin').write_bytes(b'\0\1')
    return m

def loaded(m: Path, models: dict) -> str:
    "Which of `models` loads from `m`, whole (`load_detector` checks state.pt against config.json), with its own threshold."
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        det = load_detector(m)
    found = [k for k, p in models.items() if (p/'state.pt').read_bytes() == (m/'state.pt').read_bytes()]
    assert len(found) == 1 and det.threshold == json.loads((models[found[0]]/'config.json').read_text())['threshold'], found
    return found[0]

def assert_whole(m: Path, models: dict, expect: set):
    "`m` loads as one of the models `expect`; the user's files are beside it, unchanged; no save left a folder behind."
    assert loaded(m, models) in expect
    assert sorted(p.name for p in m.iterdir()) == USER_FILES
    assert (m/'notes.txt').read_text() == 'mine' and (m/'sub'/'deep.bin').read_bytes() == b'\0\1'
    assert [p.name for p in m.parent.iterdir() if p.name.startswith('.')] == []

def cli(*argv) -> tuple[int, str, str]:
    "Exit status, stdout and stderr of `anomaly-fastai ARGV`, in this process."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: main([str(a) for a in argv]); code = 0
        except SystemExit as e: code = e.code
    return code, out.getvalue(), err.getvalue()

def other_machine() -> str: return 'ffffffff' if MACHINE != 'ffffffff' else '00000000'

# --- a save stopped at every step

KILLS = """
import hashlib, json, os, random, shutil, signal, sys, time, warnings
warnings.simplefilter('ignore')
import torch; torch.set_num_threads(1)  # no OpenMP pool, which a forked process would wait on forever
from anomaly_fastai import saving
root, a, b, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
dets = [saving.load_detector(a), saving.load_detector(b)]
def user_model(d):
    "Model A and the user's files in `d`/M."
    m = os.path.join(d, 'M'); shutil.copytree(a, m)
    open(os.path.join(m, 'notes.txt'), 'w').write('mine'); os.mkdir(os.path.join(m, 'sub'))
    open(os.path.join(m, 'sub', 'deep.bin'), 'wb').write(bytes([0, 1]))
    return m
def in_child(work) -> int:
    pid = os.fork()
    if pid == 0: work(); os._exit(0)
    return pid
# 1. a process killed (it ends itself: os._exit) after each step of a forced save of B over A; the test process loads what it left
for i, stop in enumerate(saving.SAVE_STEPS):
    m = user_model(os.makedirs(os.path.join(root, str(i))) or os.path.join(root, str(i)))
    def save_until(stop=stop, m=m):
        saving._step = lambda name: os._exit(9) if name == stop else None
        saving.save_detector(dets[1], m, force=True)
    _, status = os.waitpid(in_child(save_until), 0)
    print(json.dumps(dict(stop=stop, model=m, status=os.waitstatus_to_exitcode(status))), flush=True)
# 2. a process saving A and B in turn, 10 times, killed at a random moment; loaded after each kill
m = user_model(os.makedirs(os.path.join(root, 'random')) or os.path.join(root, 'random'))
saves = lambda: [saving.save_detector(dets[i % 2], m, force=True) for i in range(10)]
t = time.perf_counter(); os.waitpid(in_child(saves), 0); loop = time.perf_counter() - t
rng = random.Random(35)
for _ in range(rounds):
    pid = in_child(saves); time.sleep(rng.uniform(0, loop)); os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)
    det = saving.load_detector(m)
    print(json.dumps(dict(round=_, model=m, threshold=det.threshold, sha=hashlib.sha256(open(os.path.join(m, 'state.pt'), 'rb').read()).hexdigest(),
                          files=sorted(os.listdir(m)), hidden=[p for p in os.listdir(os.path.dirname(m)) if p.startswith('.')])), flush=True)
"""

@pytest.fixture(scope='module')
def killed(models, tmp_path_factory) -> list[dict]:
    "What KILLS reports: the folders that saves killed after each step left, and the models found after 12 random kills."
    r = subprocess.run([sys.executable, '-c', KILLS, str(tmp_path_factory.mktemp('killed')), str(models['A']), str(models['B']), '12'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return [json.loads(l) for l in r.stdout.splitlines()]

@pytest.mark.parametrize('stop', SAVE_STEPS)
def test_save_killed_after_each_step(models, killed, stop):
    "A process that ends after any step of a forced save: the next load finds one model whole (the new one once it is in place) and the user's files."
    run = next(k for k in killed if k.get('stop') == stop)
    assert run['status'] == 9
    assert_whole(Path(run['model']), models, {'B'} if stop == 'new model in place' else {'A'})

def test_save_killed_at_random_times(models, killed):
    "`kill -9` at a random moment of a loop of 10 saves, 12 times: each time, one model whole and the user's files."
    rows = [k for k in killed if 'round' in k]
    saved = {hashlib.sha256((p/'state.pt').read_bytes()).hexdigest(): json.loads((p/'config.json').read_text())['threshold'] for p in models.values()}
    assert len(rows) == 12 and len(saved) == 2
    for row in rows: assert saved.get(row['sha']) == row['threshold'] and row['files'] == USER_FILES and row['hidden'] == [], row
    assert_whole(Path(rows[-1]['model']), models, {'A', 'B'})

@pytest.fixture(scope='module')
def det_b(models): return load_detector(models['B'])

@pytest.mark.parametrize('stop', SAVE_STEPS)
def test_save_interrupted_after_each_step(models, det_b, tmp_path, monkeypatch, stop):
    "Ctrl-C (or any error) after any step: the save undoes itself before the error leaves it."
    m = target(tmp_path, models, 'A')
    def _step(name):
        if name == stop: raise KeyboardInterrupt
    monkeypatch.setattr(saving, '_step', _step)
    with pytest.raises(KeyboardInterrupt): save_detector(det_b, m, force=True)
    assert_whole(m, models, {'B'} if stop == 'new model in place' else {'A'})

# --- what interrupted saves left

def test_leftovers_of_an_older_version_restored(models, tmp_path):
    "The state issue 35 found (an older version killed between its renames): no model folder; the next load restores it and says so."
    m = target(tmp_path, models, 'A')
    new, old = tmp_path/'.M.saving-k3jd9_a1', tmp_path/'.M.old-x8a2nd0q'
    shutil.copytree(models['B'], new); old.mkdir()
    for f in ('notes.txt', 'sub'): (m/f).rename(new/f)
    m.rename(old/'M')
    with pytest.warns(UserWarning, match='a save into it did not finish'): load_detector(m)
    assert_whole(m, models, {'A'})

def test_a_running_save_is_left_alone(models, tmp_path):
    "The folders of a save whose process still runs are not touched; once it has ended, the next load undoes that save."
    m = target(tmp_path, models, 'A')
    sleeper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        live = tmp_path/f'.M.saving-{MACHINE}-{sleeper.pid}-abcd1234'; shutil.copytree(models['B'], live)
        assert loaded(m, models) == 'A' and (live/'state.pt').is_file()
    finally: sleeper.kill(); sleeper.wait()
    assert_whole(m, models, {'A'})

def test_another_machines_save_is_left_alone(models, tmp_path):
    "A save made on another machine (a shared disk) may still run: never touched; a load that misses the model says where it is."
    m = tmp_path/'M'; old = tmp_path/f'.M.old-{other_machine()}-123-abcd1234'
    old.mkdir(); shutil.copytree(models['A'], old/'M')
    with pytest.raises(FileNotFoundError, match=f'moved the previous model to {old/"M"}'): load_detector(m)
    assert loaded(old/'M', models) == 'A'

def test_a_users_file_in_a_leftover_is_never_deleted(models, tmp_path):
    "A leftover of an ended save that holds a file save_detector did not write: the model files go, that file stays, a warning names it."
    m = target(tmp_path, models, 'A'); (m/'mine.txt').write_text('new')
    left = tmp_path/'.M.saving-abcd1234'; shutil.copytree(models['B'], left); (left/'mine.txt').write_text('old')
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter('always'); recover(m)
    assert 'mine.txt, which are not model files: kept there' in str(said[0].message) and 'did not finish' in str(said[1].message)
    assert (left/'mine.txt').read_text() == 'old' and sorted(p.name for p in left.iterdir()) == ['mine.txt']
    assert (m/'mine.txt').read_text() == 'new' and loaded(m, models) == 'A'

def test_an_unfinished_threshold_change_is_cleaned(models, tmp_path):
    "The temporary config.json of a `threshold` command killed before its rename goes at the next load; the model is unchanged."
    ended = subprocess.Popen(['true']); ended.wait()  # a process id that has ended
    m = target(tmp_path, models, 'A'); (m/f'.config.json.new-{MACHINE}-{ended.pid}-abcd1234').write_text('{"threshold": 1')
    assert_whole(m, models, {'A'})

# --- system errors while saving name the model

@pytest.mark.parametrize('error, said', [(OSError(28, 'No space left on device'), '[Errno 28] No space left on device'),
                                         (RuntimeError('[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0'), 'enforce fail at inline_container.cc')])
def test_write_errors_name_the_model(models, det_b, tmp_path, monkeypatch, error, said):
    m = target(tmp_path, models, 'A')
    def fails(*a, **kw): raise error
    monkeypatch.setattr(torch, 'save', fails)
    with pytest.raises(OSError) as e: save_detector(det_b, m, force=True)
    assert str(e.value) == f'{m}: the model could not be saved (writing state.pt: {error}); the previous model is kept' and said in str(e.value)
    assert_whole(m, models, {'A'})

@contextlib.contextmanager
def mounted(where: Path, options: str):
    "A tmpfs mounted at `where` with `options`; the test is skipped where this process cannot mount one (not root, no CAP_SYS_ADMIN)."
    where.mkdir()
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(where)], capture_output=True, text=True)
    if r.returncode: pytest.skip(f'cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}): needs root')
    try: yield where
    finally: subprocess.run(['umount', str(where)], check=True)

def test_a_real_full_disk(models, det_b, tmp_path):
    "A disk with room for one model (a tmpfs): a forced save of a second fails naming the model; the first stays whole, no leftovers."
    room = sum(f.stat().st_size for f in models['A'].iterdir()) * 3 // 2
    with mounted(tmp_path/'disk', f'size={room // 1024 + 8}k') as disk:
        m = disk/'M'; shutil.copytree(models['A'], m)
        with pytest.raises(OSError, match=rf'^{re.escape(str(m))}: the model could not be saved \(writing state.pt: .*; the previous model is kept$'):
            save_detector(det_b, m, force=True)
        assert loaded(m, models) == 'A' and sorted(p.name for p in disk.iterdir()) == ['M']

@pytest.fixture
def read_only(tmp_path):
    "A folder this process cannot write: a read-only tmpfs for root, else a folder without write permission."
    if os.geteuid() != 0:
        d = tmp_path/'ro'; d.mkdir(); d.chmod(0o555)
        yield d; d.chmod(0o755)
    else:
        with mounted(tmp_path/'ro', 'ro,size=64k') as d: yield d

def test_fit_into_a_read_only_folder_fails_before_the_fit(read_only):
    code, out, err = cli('fit', '--method', 'knn', '--out', read_only/'m')
    assert (code, out) == (2, '') and err == (f'anomaly-fastai fit: error: {read_only/"m"} (--out): cannot save a model here: {read_only} is '
                                              'read-only or not writable by this user; expected a folder it can write to\n')

def test_bench_save_models_read_only_fails_before_any_fit(read_only, tmp_path):
    code, out, err = cli('bench', '--method', 'knn', '--out', tmp_path/'b', '--save-models', read_only, '--quiet')
    assert code == 2 and f'{read_only/"bottle"} (--save-models): cannot save a model here' in err and not (tmp_path/'b').exists()

def test_fit_under_a_file_fails_before_the_fit(tmp_path):
    (tmp_path/'f').write_text('x')
    code, out, err = cli('fit', '--method', 'knn', '--out', tmp_path/'f'/'m')
    assert (code, out) == (2, '') and f'{tmp_path/"f"/"m"} (--out): cannot create it: {tmp_path/"f"} is a file; expected a folder' in err

# --- the fingerprint guards the threshold and the preprocessing; `threshold` changes it

def test_edited_threshold_is_refused(models, tmp_path):
    m = target(tmp_path, models, 'A'); cfg = json.loads((m/'config.json').read_text())
    cfg['threshold'] = 999.0; (m/'config.json').write_text(json.dumps(cfg, indent=2))
    code, out, err = cli('test', '--model', m, '--out', tmp_path/'t')
    assert code == 2 and err.count('\n') == 1 and not (tmp_path/'t').exists()
    assert f'{m/"config.json"}: threshold was changed after saving (threshold {json.loads((models["A"]/"config.json").read_text())["threshold"]!r} -> 999.0); ' in err
    assert f'change it with `anomaly-fastai threshold --model {m} --set VALUE`' in err

def test_sed_over_config_is_refused(models, tmp_path):
    "A `sed` that rewrites the size everywhere in config.json, the fingerprint's copy too: the digest tells."
    m = target(tmp_path, models, 'A'); text = (m/'config.json').read_text()
    assert text.count('"size": 64') == 2
    (m/'config.json').write_text(text.replace('"size": 64', '"size": 128'))
    with pytest.raises(ValueError, match=r"config.json: preprocess was changed after fitting \(preprocess is now \{'size': 128.*its copy in the fingerprint was edited too"):
        load_detector(m)

def test_edited_norm_is_refused(models, tmp_path):
    m = target(tmp_path, models, 'A'); cfg = json.loads((m/'config.json').read_text())
    cfg['norm']['max'] *= 2; (m/'config.json').write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r'config.json: norm was changed after fitting \(norm.max .* -> '): load_detector(m)

def test_threshold_command(models, tmp_path):
    "`threshold --set` is the way to change the threshold: config.json replaced with a new fingerprint, the labels follow, the scores do not change."
    m = target(tmp_path, models, 'A'); before = json.loads((m/'config.json').read_text())['threshold']
    code, out, err = cli('threshold', '--model', m, '--set', '0.42')
    assert (code, err) == (0, '') and out == f'{m}: threshold {before:.6g} -> 0.42; files exported from it before keep {before:.6g}: export it again\n'
    det, a = load_detector(m), load_detector(models['A'])
    assert det.threshold == 0.42 and det.threshold_rule['rule'] == 'set' and det.flags([0.41, 0.43]).tolist() == [False, True]
    x = torch.stack([a.pre.image(s.path) for s in sample_dataset().test[:2]])
    assert torch.allclose(det.score(x)['scores'], a.score(x)['scores'])
    assert sorted(p.name for p in m.iterdir()) == USER_FILES and (m/'notes.txt').read_text() == 'mine'

def test_threshold_command_refuses_an_edited_model(models, tmp_path):
    "An edited config.json is not signed by `threshold`: refused, left as it was."
    m = target(tmp_path, models, 'A'); text = (m/'config.json').read_text().replace('"size": 64', '"size": 128')
    (m/'config.json').write_text(text)
    code, out, err = cli('threshold', '--model', m, '--set', '0.42')
    assert code == 2 and 'preprocess was changed after fitting' in err and (m/'config.json').read_text() == text

@pytest.mark.parametrize('value, said', [('nan', "argument --set: expected a number, found 'nan'"), ('x', "argument --set: expected a number, found 'x'")])
def test_threshold_command_refuses_a_value(models, tmp_path, value, said):
    m = target(tmp_path, models, 'A'); before = (m/'config.json').read_bytes()
    code, out, err = cli('threshold', '--model', m, '--set', value)
    assert code == 2 and said in err and (m/'config.json').read_bytes() == before

def test_threshold_change_that_fails_leaves_config(models, tmp_path, monkeypatch):
    "A `threshold` whose rename fails (a full disk, a read-only folder): config.json as it was, no temporary file."
    m = target(tmp_path, models, 'A'); before = (m/'config.json').read_bytes()
    def fails(*a): raise OSError(28, 'No space left on device')
    monkeypatch.setattr(os, 'replace', fails)
    with pytest.raises(OSError, match='No space left'): set_threshold(m, 0.42)
    monkeypatch.undo()
    assert (m/'config.json').read_bytes() == before and sorted(p.name for p in m.iterdir()) == USER_FILES

def test_models_saved_before_the_digests_still_load(models, tmp_path):
    "A fingerprint without digests (saved before them) or no fingerprint at all: loads; `threshold --set` gives it a whole one."
    m = target(tmp_path, models, 'A'); cfg = json.loads((m/'config.json').read_text())
    for k in ('digests', 'threshold', 'norm'): del cfg['fingerprint'][k]
    (m/'config.json').write_text(json.dumps(cfg))
    assert loaded(m, models) == 'A'
    del cfg['fingerprint']; (m/'config.json').write_text(json.dumps(cfg))
    assert loaded(m, models) == 'A'
    set_threshold(m, 0.42)
    assert sorted(json.loads((m/'config.json').read_text())['fingerprint']['digests']) == sorted(GUARDED) and load_detector(m).threshold == 0.42

# --- an exported file named in capitals

def test_model_X_ONNX_is_an_exported_file(models, tmp_path):
    "`--model X.ONNX` is the exported file: predict scores it; test, which needs a model directory, says so."
    assert cli('export', '--model', models['A'], '--out', tmp_path/'x.onnx')[0] == 0
    f = (tmp_path/'x.onnx').rename(tmp_path/'X.ONNX')
    code, out, err = cli('predict', '--model', f, '--out', tmp_path/'p', '--no-heatmaps', sample_path()/'bottle'/'test'/'broken_large'/'000.jpg')
    assert code == 0 and out.startswith(f'engine: onnxruntime ({f})'), out + err
    code, out, err = cli('test', '--model', f, '--out', tmp_path/'t')
    assert code == 2 and f'{f}: expected a model directory with config.json and state.pt (written by `anomaly-fastai fit`), found a file; ' \
                         'an exported .onnx file is scored by predict and anomaly-fastai-run' in err
