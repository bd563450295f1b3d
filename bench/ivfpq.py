"""PatchCore with a compressed bank (`search='faiss-ivfpq'`) against the exact search, on the shared data (issue 32).

    .venv/bin/python bench/ivfpq.py [--datasets bottle,magnetic_tile] [--size 256] [--threads 2] [--out bench/results/ivfpq]

Per dataset, each setting in its own process (its peak memory is its own), MobileNetV2, default geometry, PatchCore's
defaults (coreset 0.1, num_neighbors 9):
- `torch`: the exact search (the default), scored by the torch module (eager);
- `faiss-ivfpq`: fitted with the compressed bank (the same coreset: it is seeded and does not depend on the search),
  scored by the torch module (eager: the IVF-PQ search);
- `faiss-ivfpq exported`: the same fitted model scored by ONNX Runtime (its export: the exact search over the bank
  reconstructed from the index, what `predict` and `test` run by default on a CPU).
Columns: image AUROC, pixel AUROC, PRO (as bench/patch.py), fit and scoring time; bank memory: the float32 bank
(rows x D x 4 bytes), the index (`index_bytes()`, its size in memory), their ratio, and everything the fitted detector
and its scoring module hold for the search (bank or index, squared norms, Eq. 7's support table, sources: tensors
counted once); recall@1 of the IVF-PQ search against the exact search (float16 bank, as the torch detector holds it)
on every patch of every test image, the relative error of its distances, and the share of patches whose nearest
*reconstructed* row it found (the IVF's own misses).
"""
import json, resource, shutil, subprocess, sys, tempfile, time
from datetime import date
from pathlib import Path
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import bench_datasets, bench_parser, device_name, emit_row, own_markdown_options, saved_run

COLUMNS = ['category', 'search', 'scored_by', 'image_auroc', 'pixel_auroc', 'pro', 'fit_s', 'score_s', 'images_per_s', 'bank_rows',
           'bank_f32_mb', 'index_mb', 'bank_over_index', 'held_mb', 'state_mb', 'recall_at_1', 'dist_rel_err', 'ivf_found',
           'nlist', 'pq_m', 'pq_nbits', 'nprobe', 'input', 'peak_rss_mb', 'device']

def commit() -> str:
    h = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True, cwd=HERE).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], capture_output=True, text=True, cwd=HERE).stdout.strip()
    return h + ('-dirty' if dirty else '')

def held_bytes(det) -> int:
    "Bytes of everything the fitted PatchCore detector and its scoring module hold for the search (each tensor storage once; the faiss index by its serialised size)."
    m, seen, total = det.memory, set(), 0
    ts = [m.bank, m.sources, getattr(m.nn, 'bank', None), getattr(m.nn, '_sq', None)] + [b for n, b in det.module.named_buffers() if not n.startswith('taps')]
    for t in ts:
        if t is None or t.untyped_storage().data_ptr() in seen: continue
        seen.add(t.untyped_storage().data_ptr()); total += t.untyped_storage().nbytes()
    if m.bank is None: total += m.nn.index_bytes().numel()
    return total

def state_mb(st) -> float: return sum(v.nbytes for v in st.values() if isinstance(v, torch.Tensor)) / 2**20

@torch.inference_mode()
def search_quality(det, exact_bank, ds, max_images: int) -> dict:
    "recall@1 of the IVF-PQ search against the exact one, relative distance error, share of patches that found the nearest reconstructed row."
    from anomaly_fastai.scoring import NearestNeighbours
    mem = det.memory
    exact = NearestNeighbours('euclidean').fit(exact_bank)
    rec = NearestNeighbours('euclidean').fit(mem.nn.vectors(torch.arange(len(mem))))
    step = max(1, len(ds.test) // max_images)
    hits = found = n = 0; err = 0.
    for k in range(0, len(ds.test), 8 * step):
        xs = torch.stack([det.pre.image(s.path) for s in ds.test[k:k + 8 * step:step]])
        q = det._patches(xs).reshape(-1, det.dim)
        d, i = mem.nn.search(q, 1)
        d_ex, i_ex = exact.search(q, 1)
        _, i_rec = rec.search(q, 1)
        hits += int((i == i_ex).sum()); found += int((i == i_rec).sum()); n += len(q)
        err += float(((d - d_ex).abs() / d_ex.clamp_min(1e-12)).sum())
    return dict(recall_at_1=hits / n, dist_rel_err=err / n, ivf_found=found / n)

def one_run(a):
    from anomaly_fastai.data import Preprocess
    from anomaly_fastai.evaluate import evaluate_detector
    from anomaly_fastai.patch import PatchCoreDetector
    from anomaly_fastai.scoring import ivfpq_shape
    torch.set_num_threads(a.threads)
    import faiss; faiss.omp_set_num_threads(a.threads)
    ds = next(bench_datasets(a.data, a.one['dataset']))
    search = a.one['search']
    det = PatchCoreDetector('mobilenet_v2', Preprocess(a.size), search=search, seed=a.seed).fit(ds, progress=False)
    print(f'fitted in {det.fit_seconds:.1f} s', file=sys.stderr, flush=True)
    n, D = len(det.memory), det.dim
    rows = []
    for engine in (('torch', 'onnxruntime') if search != 'torch' else ('torch',)):
        t0 = time.perf_counter()
        m, _ = evaluate_detector(det, ds, progress=False, engine=engine)
        score_s = time.perf_counter() - t0
        rows.append(dict(category=ds.name, search=search, scored_by='torch (eager)' if engine == 'torch' else 'onnxruntime (export)',
                         image_auroc=m['image_auroc'], pixel_auroc=m['pixel_auroc'], pro=m['pro'], fit_s=det.fit_seconds,
                         score_s=score_s, images_per_s=m['images_per_s'], bank_rows=n, bank_f32_mb=n * D * 4 / 2**20))
    held = held_bytes(det) / 2**20
    extra = dict(held_mb=held, state_mb=state_mb(det._state()), input=f'{det.pre.input_size[0]}x{det.pre.input_size[1]}', device=device_name())
    if search == 'faiss-ivfpq':
        nn_ = det.memory.nn
        idx_mb = nn_.index_bytes().numel() / 2**20
        nlist, pq_m, nbits = ivfpq_shape(n, D)
        # the exact detector's bank (its run saved it): the same seeded coreset
        ref = torch.load(a.one['bank_file'])
        assert torch.equal(ref['sources'], det.memory.sources), 'the two fits chose different coresets'
        extra.update(index_mb=idx_mb, bank_over_index=n * D * 4 / 2**20 / idx_mb, nlist=nlist, pq_m=pq_m, pq_nbits=nbits, nprobe=nn_.nprobe,
                     **search_quality(det, ref['bank'], ds, a.quality_images))
    else: torch.save(dict(bank=det.memory.bank, sources=det.memory.sources), a.one['bank_file'])
    for r in rows: emit_row(r | extra | dict(peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))

def markdown(rows, a, run=None) -> str:
    "The results table; `run`: (command, commit, date) of the run, when the table is rewritten later (`--notes-only`)."

    def fmt(c, v):
        if isinstance(v, float) and c in ('bank_rows', 'nlist', 'pq_m', 'pq_nbits', 'nprobe'): return str(int(v))
        if isinstance(v, float): return f'{v:.4f}' if abs(v) < 10 else f'{v:.1f}'
        return '' if v is None else str(v)
    head = ['|' + '|'.join(COLUMNS) + '|', '|' + '|'.join(':---' if c in ('category', 'search', 'scored_by', 'input', 'device') else '---:' for c in COLUMNS) + '|']
    body = ['|' + '|'.join(fmt(c, r.get(c)) for c in COLUMNS) + '|' for r in rows]
    cmd, sha, day = run or (' '.join(['.venv/bin/python bench/ivfpq.py'] + sys.argv[1:]), commit(), date.today())
    return '\n'.join([
        '# PatchCore: compressed bank (faiss-ivfpq) against the exact search', '',
        f'`{cmd}` at commit `{sha}`, {day}, on {next((r["device"] for r in rows if r.get("device")), device_name())} '
        f'(torch {torch.__version__}, faiss {__import__("faiss").__version__}); torch and faiss {a.threads} threads; MobileNetV2, '
        f'default geometry (short side {a.size}), PatchCore defaults (coreset 0.1, num_neighbors 9); each search fitted in its own process. '
        'score_s: `evaluate_detector` over the whole test set (batches of 8), with the engine in scored_by.', '',
        *head, *body, '', NOTES, *a.note])

NOTES = """Notes
- bank_f32_mb: the coreset bank as float32 (rows x 128 x 4 bytes; the torch detector saves it as float16, half that);
  index_mb: the IVF-PQ index (codes, row ids, row -> list map, codebooks, list centres; faiss's precomputed table is off),
  its size in memory and in the saved state; bank_over_index: the ratio (target: at least 8).
- held_mb: what the fitted detector and its scoring module hold for the search. torch: the float32 bank and its norms
  (the search), the module's float16 bank, its norms, Eq. 7's (rows x 9) int64 support table and the sources; faiss-ivfpq:
  the index and the sources (int64, 8 bytes a row), nothing else.
- recall_at_1: share of the test patches whose IVF-PQ nearest row is the exact search's (every patch of the test
  images, at most about 100 of them spread over the test set: all 83 of bottle, every 5th of Magnetic Tile); dist_rel_err: mean |d_ivfpq - d_exact| / d_exact; ivf_found: share of patches for which
  the IVF-PQ search returned the nearest *reconstructed* row (what the exported model finds: 1 - the IVF's misses).
- The onnxruntime row is the same fitted model, exported: the exact search of the reconstructed bank, stored float32
  in the graph, so its memory is that of a float32 bank, not of the index."""

def main():
    ap = bench_parser(__doc__, 'bench/results/ivfpq')
    ap.add_argument('--size', type=int, default=256)
    ap.add_argument('--threads', type=int, default=2, help='torch and faiss threads')
    ap.add_argument('--searches', default='torch,faiss-ivfpq')
    ap.add_argument('--quality-images', type=int, default=100, help='recall on at most about this many test images, spread over the test set (default 100)')
    own_markdown_options(ap)
    a = ap.parse_args()
    if a.one: return one_run(a)
    if a.notes_only:
        rows, run = saved_run(a.out)
        return Path(a.out).with_suffix('.md').write_text(markdown(rows, a, run) + '\n')
    rows, out, tmp = [], Path(a.out), Path(tempfile.mkdtemp(prefix='bench-ivfpq-'))
    for ds in a.datasets.split(','):
        for search in a.searches.split(','):  # torch first: its run saves the exact bank that the recall is measured against
            one = json.dumps(dict(dataset=ds, search=search, bank_file=str(tmp/f'{ds}.pt')))
            cmd = [sys.executable, __file__, '--data', a.data, '--seed', a.seed, '--size', a.size, '--threads', a.threads,
                   '--quality-images', a.quality_images, '--one', one]
            p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
            got = [json.loads(l[4:]) for l in p.stdout.splitlines() if l.startswith('ROW ')]
            if p.returncode or not got: sys.exit(f'{one} failed:\n{p.stderr[-3000:]}')
            rows += got
            print(json.dumps(got), flush=True)
            import pandas as pd
            pd.DataFrame(rows, columns=COLUMNS).to_csv(out.with_suffix('.csv'), index=False)
            out.with_suffix('.md').write_text(markdown(rows, a) + '\n')
    shutil.rmtree(tmp, ignore_errors=True)

if __name__ == '__main__': main()
