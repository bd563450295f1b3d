"""Scoring on Ray against plain `predict`, on this machine (issue 32).

    .venv/bin/python bench/scale.py                                   # knn, 5000 images; patchcore, 1000 (a quiet machine: ~30 min)
    .venv/bin/python bench/scale.py --methods knn --n-images 500      # a quick look

Per method (fitted with its defaults on bottle's good images, exported to .onnx; the runs score that file):
- the images: the shared test and training sets (bottle and Magnetic Tile), hard-linked under new names up to `--n-images`;
- `anomaly-fastai predict --no-heatmaps` as a whole process (start-up included): local (this process, ONNX Runtime, 2 threads),
  `--engine ray` with 1 worker of 1 CPU, 1 of 2 CPUs, 2 of 1 CPU on a local Ray instance started by the command (Ray's start
  and stop included), and `--engine ray --address` on a cluster of two Ray nodes of one CPU each on this machine
  (`ray.cluster_utils.Cluster`, started before the timing); wall seconds, images/s, and whether predictions.csv equals the local
  run's byte for byte;
- Ray's fixed cost: `--engine ray --workers 1` on 8 images;
- a run on 2 workers with one scoring actor killed (SIGKILL) once a chunk is written: rows, distinct paths, equal to local.

`--overhead N` (-> `--out`_overhead.md|csv) instead alternates N times local `predict` and `--engine ray --workers 1
--cpus-per-worker 2` on the same images and model, with the CPU seconds of every process on the machine while each runs
(read from /proc: the CLI process, Ray's actor, Ray's own processes): what Ray costs on top of the scoring itself.
"""
import argparse, csv, os, shutil, signal, subprocess, sys, tempfile, threading, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from speed import cli_path, commit, section

def images(data: Path, n: int, folder: Path) -> Path:
    "`n` image files in `folder`: the shared sets' images, repeated under new names (hard links)."
    src = sorted(p for d in (data/'mvtec_ad'/'bottle', data/'magnetic_tile') for p in d.rglob('*')
                 if p.suffix.lower() in ('.png', '.jpg') and 'ground_truth' not in p.parts and not p.stem.endswith('_mask'))
    folder.mkdir(parents=True)
    for k in range(n): os.link(src[k % len(src)], folder/f'{k:05d}{src[k % len(src)].suffix}')
    return folder

def timed(cmd) -> float:
    t = time.perf_counter()
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True)
    if r.returncode: raise RuntimeError(f'{" ".join(map(str, cmd))}: exit {r.returncode}: {r.stderr[-2000:]}')
    return time.perf_counter() - t

def _cpu_seconds() -> dict:
    "{pid: (what the process is, its CPU seconds so far)} of every process on this machine (Linux /proc)."
    tick, procs = os.sysconf('SC_CLK_TCK'), {}
    for p in Path('/proc').glob('[0-9]*'):
        try:
            cmd = (p/'cmdline').read_bytes().replace(b'\0', b' ').decode(errors='replace')
            f = (p/'stat').read_text().rsplit(')', 1)[1].split()
        except OSError: continue  # ended meanwhile
        if cmd: procs[int(p.name)] = (cmd, (int(f[11]) + int(f[12])) / tick)
    return procs

def _kind(cmd: str) -> str:
    if 'Scorer' in cmd or 'MapWorker' in cmd: return 'actor'
    if 'anomaly-fastai' in cmd: return 'cli'
    return 'ray' if 'ray' in cmd.lower() or 'gcs_server' in cmd else 'other'

def cpu_run(cmd) -> dict:
    "Wall seconds of `cmd` and the CPU seconds each kind of process (`_kind`) used while it ran (sampled every 0.2 s)."
    before, seen = _cpu_seconds(), {}
    t = time.perf_counter()
    pr = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while pr.poll() is None:
        seen.update(_cpu_seconds()); time.sleep(0.2)
    wall = time.perf_counter() - t
    if pr.returncode: raise RuntimeError(f'{" ".join(map(str, cmd))}: exit {pr.returncode}: {pr.stderr.read()[-2000:]}')
    cpu = {}
    for pid, (what, sec) in seen.items():
        old = before.get(pid)
        k = _kind(what); cpu[k] = cpu.get(k, 0) + sec - (old[1] if old and old[0] == what else 0)
    return dict(wall_s=round(wall, 1), **{f'cpu_{k}_s': round(cpu.get(k, 0), 1) for k in ('cli', 'actor', 'ray', 'other')})

def overhead(exe, data: Path, methods: str, n_images, rounds: int, tmp: Path) -> list:
    "Alternated local and 1-worker Ray runs (`--overhead`)."
    rows = []
    for spec in methods.split(','):
        method, n = spec.split(':')[0], n_images or int(spec.split(':')[1])
        d = tmp/method
        timed([exe, 'fit', '--method', method, '--data', data/'mvtec_ad', '--category', 'bottle', '--out', d/'model'])
        timed([exe, 'export', '--model', d/'model', '--out', d/'model.onnx'])
        folder = images(data, n, d/'images')
        predict = [exe, 'predict', '--model', d/'model.onnx', '--no-heatmaps']
        for r in range(rounds):
            for run, extra in (('local', []), ('ray, 1 worker of 2 CPUs', ['--engine', 'ray', '--workers', 1, '--cpus-per-worker', 2])):
                out = d/f'o{r}-{len(extra)}'
                rows.append(dict(category='bottle', method=method, images=n, round=r + 1, run=run, **cpu_run([*predict, *extra, '--out', out, folder])))
                rows[-1]['cpu_total_s'] = round(sum(v for k, v in rows[-1].items() if k.startswith('cpu_') and k != 'cpu_other_s'), 1)
                print(rows[-1], flush=True)
    return rows

def killed_run(model: Path, folder: Path, out: Path, chunk: int = 64) -> dict:
    "predict_ray on 2 workers with one actor killed once a chunk is written."
    import ray
    from anomaly_fastai.distributed import predict_ray, scorer_pids
    killed = {}
    def kill_one():
        while not killed and not (out/'.done').exists():
            n = sum(1 for _ in open(out/'predictions.csv')) - 1 if (out/'predictions.csv').is_file() else 0
            if (pids := scorer_pids()) and n >= chunk:
                os.kill(pids[0], signal.SIGKILL); killed.update(pid=pids[0], rows_then=n)
            time.sleep(0.05)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level='ERROR')
    try:
        t = threading.Thread(target=kill_one); t.start()
        start = time.perf_counter()
        predict_ray(model, [folder], out, heatmaps=False, chunk=chunk)
        wall = time.perf_counter() - start
        (out/'.done').touch(); t.join()
    finally: ray.shutdown()
    rows = list(csv.DictReader(open(out/'predictions.csv')))
    return dict(wall=wall, rows=len(rows), distinct=len({r['path'] for r in rows}), **killed)

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', default='../shared/data')
    ap.add_argument('--methods', default='knn:5000,patchcore:1000', help='method:images, comma-separated')
    ap.add_argument('--n-images', type=int, help='images for every method (overrides the counts of --methods)')
    ap.add_argument('--out', default='bench/results/scale')
    ap.add_argument('--overhead', type=int, metavar='N', help='alternate N local and 1-worker Ray runs, with CPU by process (see above)')
    a = ap.parse_args()
    from ray.cluster_utils import Cluster
    exe, data, rows = cli_path(), Path(a.data), []
    tmp = Path(tempfile.mkdtemp(prefix='scale-'))
    if a.overhead:
        rows = overhead(exe, data, a.methods, a.n_images, a.overhead, tmp)
        cols = list(dict.fromkeys(k for r in rows for k in r))
        with open(a.out + '_overhead.csv', 'w', newline='') as f:
            w = csv.DictWriter(f, cols); w.writeheader(); w.writerows(rows)
        head = (f'# Ray\'s cost over local predict\n\n`python bench/scale.py {" ".join(sys.argv[1:])}` at commit `{commit()}`, '
                f'{time.strftime("%Y-%m-%d")}, {os.cpu_count()} CPUs. Whole processes, `--no-heatmaps`, the exported .onnx fitted on bottle; '
                'runs alternated; CPU seconds of the processes on this machine while each ran: `cli` the anomaly-fastai process (the local '
                'run scores in it; on Ray it is the driver), `actor` the Ray scoring actor, `ray` Ray\'s own processes (raylet, GCS, '
                'its internal actors), `other` everything else (not in the total).\n\n')
        Path(a.out + '_overhead.md').write_text(head + section(rows, cols))
        shutil.rmtree(tmp, ignore_errors=True)
        return print(Path(a.out + '_overhead.md').read_text())
    for spec in a.methods.split(','):
        method, n = spec.split(':')[0], a.n_images or int(spec.split(':')[1])
        d = tmp/method
        timed([exe, 'fit', '--method', method, '--data', data/'mvtec_ad', '--category', 'bottle', '--out', d/'model'])
        timed([exe, 'export', '--model', d/'model', '--out', d/'model.onnx'])
        folder = images(data, n, d/'images')
        few = images(data, 8, d/'few')
        predict = [exe, 'predict', '--model', d/'model.onnx', '--no-heatmaps']
        ref = None
        def add(run, workers, nodes, wall, out, n_img=n):
            nonlocal ref
            text = (out/'predictions.csv').read_text()
            ref = ref if ref is not None else text
            rows.append(dict(category='bottle', method=method, images=n_img, run=run, workers=workers, nodes=nodes, wall_s=round(wall, 1),
                             img_s=round(n_img / wall, 1), same_csv_as_local=text == ref if n_img == n else ''))
            print(rows[-1], flush=True)
        add('predict (local)', '', 1, timed([*predict, '--out', d/'local', folder]), d/'local')
        for w, c in ((1, 1), (1, 2), (2, 1)):
            add(f'predict --engine ray --workers {w} --cpus-per-worker {c}', w, 1,
                timed([*predict, '--engine', 'ray', '--workers', w, '--cpus-per-worker', c, '--out', d/f'ray{w}x{c}', folder]), d/f'ray{w}x{c}')
        cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=1, include_dashboard=False))
        try:
            cluster.add_node(num_cpus=1); cluster.wait_for_nodes()
            add('predict --engine ray --address (2 nodes)', 2, 2, timed([*predict, '--engine', 'ray', '--address', cluster.address, '--out', d/'nodes', folder]), d/'nodes')
        finally: cluster.shutdown()
        add('Ray fixed cost: --workers 1 on 8 images', 1, 1, timed([*predict, '--engine', 'ray', '--workers', 1, '--out', d/'few_out', few]), d/'few_out', 8)
        k = killed_run(d/'model.onnx', folder, d/'killed')
        rows.append(dict(category='bottle', method=method, images=n, run=f'2 workers, one actor killed at {k.get("rows_then", "-")} rows', workers=2, nodes=1,
                         wall_s=round(k['wall'], 1), img_s=round(n / k['wall'], 1),
                         same_csv_as_local=(d/'killed'/'predictions.csv').read_text() == ref, rows=k['rows'], distinct_paths=k['distinct']))
        print(rows[-1], flush=True)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(a.out + '.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, cols); w.writeheader(); w.writerows(rows)
    head = (f'# Scoring on Ray\n\n`python bench/scale.py {" ".join(sys.argv[1:])}` at commit `{commit()}`, {time.strftime("%Y-%m-%d")}, '
            f'{os.cpu_count()} CPUs. Whole processes, `--no-heatmaps`, the exported .onnx of each method fitted on bottle; '
            'images: the shared sets repeated under new names.\n\n')
    Path(a.out + '.md').write_text(head + section(rows, cols))
    shutil.rmtree(tmp, ignore_errors=True)
    print(Path(a.out + '.md').read_text())

if __name__ == '__main__': main()
