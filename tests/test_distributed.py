"Scoring and fitting on Ray (`--engine ray`): a two-node local cluster gives predict's rows, a killed actor loses no image, a broken category fails alone."
import csv, os, shutil, signal, subprocess, sys, threading, time
from pathlib import Path
import pytest
from anomaly_fastai.data import sample_path

ray = pytest.importorskip('ray', reason='the Ray engine needs ray[data] (pip install "anomaly-fastai[ray]")')
CLI = str(Path(sys.executable).parent/'anomaly-fastai')

def run(*args, code=0):
    r = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True)
    assert r.returncode == code, r.stderr
    return r

def rows(out: Path) -> list[dict]: return list(csv.DictReader(open(out/'predictions.csv', newline='')))

@pytest.fixture(scope='module')
def onnx_model(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp('ray')
    run('fit', '--method', 'knn', '--size', '64', '--out', d/'model')
    run('export', '--model', d/'model', '--out', d/'model.onnx')
    return d/'model.onnx'

def test_two_node_cluster_writes_the_rows_of_predict(onnx_model, tmp_path):
    "`predict --engine ray --address` on two Ray nodes of one CPU each: the same predictions.csv, byte for byte, and heatmaps."
    from ray.cluster_utils import Cluster
    images = [sample_path()/'bottle'/'test', sorted((sample_path()/'bottle'/'train'/'good').iterdir())[0]]
    (tmp_path/'bad.png').write_bytes(b'not an image')
    run('predict', '--model', onnx_model, '--out', tmp_path/'local', *images, tmp_path/'bad.png', code=1)
    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=1, include_dashboard=False))
    try:
        cluster.add_node(num_cpus=1)
        r = run('predict', '--engine', 'ray', '--address', cluster.address, '--model', onnx_model, '--out', tmp_path/'ray',
                *images, tmp_path/'bad.png', code=1)
    finally: cluster.shutdown()
    assert 'on Ray: 2 workers' in r.stdout and '2 nodes' in r.stdout, r.stdout
    assert 'could not be scored' in r.stderr and 'Traceback' not in r.stderr
    assert (tmp_path/'ray'/'predictions.csv').read_text() == (tmp_path/'local'/'predictions.csv').read_text()
    maps = sorted(p.relative_to(tmp_path/'local') for p in (tmp_path/'local'/'heatmaps').rglob('*.png'))
    assert maps and sorted(p.relative_to(tmp_path/'ray') for p in (tmp_path/'ray'/'heatmaps').rglob('*.png')) == maps
    import pandas as pd
    assert len(pd.read_parquet(tmp_path/'ray'/'predictions.parquet')) == len(rows(tmp_path/'local'))

@pytest.mark.skipif(not Path('/proc').is_dir(), reason='finds the actor processes in /proc')
def test_killed_actor_loses_and_repeats_no_image(onnx_model, tmp_path):
    "An actor killed (SIGKILL) in the middle of a run: Ray restarts it and runs its chunk again; each image is written once."
    src = sorted((sample_path()/'bottle'/'test').rglob('*.*')) + sorted((sample_path()/'bottle'/'train').rglob('*.*'))
    src = [p for p in src if p.suffix.lower() in ('.png', '.jpg')]
    images = tmp_path/'images'; images.mkdir()
    for k in range(160):  # the sample's images under new names
        os.link(src[k % len(src)], images/f'{k:03d}{src[k % len(src)].suffix}')
    from anomaly_fastai.distributed import predict_ray, scorer_pids
    from anomaly_fastai.runtime import load, predict_files
    predict_files(load(onnx_model), [images], tmp_path/'local')
    killed = {}
    def kill_one():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            pids, done = scorer_pids(), len(rows(tmp_path/'ray')) if (tmp_path/'ray'/'predictions.csv').is_file() else 0
            if pids and done >= 8:  # a chunk is written: the actors are busy with the next ones
                os.kill(pids[0], signal.SIGKILL)
                killed.update(pid=pids[0], rows=done)
            time.sleep(0.05)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level='ERROR')
    try:
        t = threading.Thread(target=kill_one); t.start()
        predict_ray(onnx_model, [images], tmp_path/'ray', chunk=8)
        t.join()
    finally: ray.shutdown()
    assert killed and killed['rows'] < 160, killed  # killed mid-run
    got, want = rows(tmp_path/'ray'), rows(tmp_path/'local')
    assert len(got) == len({r['path'] for r in got}) == 160
    assert got == want

def test_bench_fits_categories_as_ray_tasks_one_broken(tmp_path):
    "`bench --engine ray` over two categories, one with an undecodable training image: the other is fitted and tested, the table has both."
    root = tmp_path/'mvtec'
    shutil.copytree(sample_path()/'bottle', root/'bottle')
    shutil.copytree(sample_path()/'bottle', root/'cracked')
    first = sorted((root/'cracked'/'train'/'good').iterdir())[0]
    first.write_bytes(first.read_bytes()[:200])  # the header is readable, the pixels are not
    r = run('bench', '--method', 'knn', '--engine', 'ray', '--data', root, '--category', 'bottle,cracked', '--size', '64', '--heatmaps', '1',
            '--out', tmp_path/'b', code=1)
    assert 'cracked: error:' in r.stderr and str(first.name) in r.stderr  # found by the checks before any fit and 'Traceback' not in r.stderr, r.stderr
    assert '1 of 2 categories failed (cracked' in r.stderr
    table = list(csv.DictReader(open(tmp_path/'b'/'results.csv')))
    assert [t['category'] for t in table[:2]] == ['bottle', 'cracked']
    assert float(table[0]['image_auroc']) > 0.5 and not table[0]['error'] and table[1]['error']
    assert (tmp_path/'b'/'report.html').is_file() and len(list((tmp_path/'b'/'heatmaps'/'bottle').rglob('*.png'))) == 1

def test_ray_options_need_the_ray_engine(onnx_model, tmp_path):
    r = run('predict', '--model', onnx_model, '--workers', '2', '--out', tmp_path/'p', sample_path()/'bottle'/'test', code=2)
    assert '--workers applies only with --engine ray' in r.stderr

def test_a_fit_that_fails_in_its_ray_task_fails_alone(tmp_path):
    "A category that passes bench's checks but fails in its Ray task (here: unchecked, an undecodable image) gives its error; the other is fitted."
    from anomaly_fastai.cli import bench_category, build_parser
    from anomaly_fastai.data import load_dataset
    from anomaly_fastai.distributed import run_tasks
    root = tmp_path/'mvtec'
    for cat in ('bottle', 'cracked'): shutil.copytree(sample_path()/'bottle', root/cat)
    first = sorted((root/'cracked'/'train'/'good').iterdir())[0]
    first.write_bytes(first.read_bytes()[:200])
    args = build_parser().parse_args(['bench', '--method', 'knn', '--size', '64', '--heatmaps', '0', '--out', str(tmp_path/'b')])
    jobs = [(args, load_dataset(root, cat), tmp_path/'b') for cat in ('cracked', 'bottle')]
    got = {i: (r, e) for i, r, e in run_tasks(bench_category, jobs, num_cpus=1)}
    assert got[0][0] is None and first.name in str(got[0][1])
    assert got[1][1] is None and got[1][0]['row']['category'] == 'bottle' and got[1][0]['row']['image_auroc'] > 0.5
