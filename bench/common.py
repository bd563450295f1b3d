"What the benchmark scripts share: the shared datasets, their common options and the name of the device."
import argparse, json, platform, subprocess, sys
from pathlib import Path
import torch
from anomaly_fastai.data import load_dataset
from anomaly_fastai.metrics import ResultsTable

DATASETS = {'bottle': ('mvtec_ad', 'bottle'), 'magnetic_tile': ('magnetic_tile/split.csv', None)}
MIXED = 'line,blob,defect_on_blob,scar,cutpaste,perlin,randaugment'  # the 'mixed' twins of the results tables: every generator before `crack` and `realistic`

def bench_parser(doc: str, out: str) -> argparse.ArgumentParser:
    "A parser with the options every benchmark takes: --data --out --datasets --backbones --seed."
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', default='../shared/data', help='folder holding mvtec_ad/ and magnetic_tile/')
    ap.add_argument('--out', default=out, help='results path without extension')
    ap.add_argument('--datasets', default=','.join(DATASETS), help='comma-separated, from: ' + ', '.join(DATASETS))
    ap.add_argument('--backbones', default='mobilenet_v2', help='comma-separated backbone names')
    ap.add_argument('--seed', type=int, default=42)
    return ap

def child_run_options(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    "The options of a benchmark that runs each setting in its own process (`run_child`) and can add to its table: --threads --append --notes-only."
    ap.add_argument('--threads', type=int, default=1, help='torch threads per run (default 1: the CPU is shared)')
    ap.add_argument('--append', action='store_true', help='add the rows to an existing results table')
    ap.add_argument('--notes-only', action='store_true', help='rewrite the markdown table from the CSV (with the note) and stop')
    ap.add_argument('--one', type=json.loads, help=argparse.SUPPRESS)  # internal: one run, in a child process
    return ap

def bench_datasets(data, names: str):
    "Load the comma-separated shared datasets `names` under `data`, each named as in the results table."
    for name in names.split(','):
        rel, cat = DATASETS[name]
        ds = load_dataset(Path(data)/rel, cat); ds.name = name
        print(ds.summary(), flush=True)
        yield ds

def device_name() -> str:
    "The GPU's name, or the CPU and its thread count: timings are only comparable on the same device."
    if torch.cuda.is_available(): return torch.cuda.get_device_name()
    return f'CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)'

def emit_row(row: dict):
    "Hand one result row from a child process to `run_child`: a line `ROW <json>` on stdout."
    print('ROW ' + json.dumps(row), flush=True)

def run_child(cmd: list, what: str) -> tuple[dict, str]:
    "Run one setting in a fresh process (its peak memory is its own): the row it emitted and its stderr; stop naming `what` if it failed."
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    rows = [json.loads(l[4:]) for l in p.stdout.splitlines() if l.startswith('ROW ')]
    if p.returncode or not rows: sys.exit(f'{what} failed:\n{p.stderr[-3000:]}')
    return rows[0], p.stderr

def own_markdown_options(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    "The options of a benchmark that runs each setting in a child process and writes its own markdown: --note --notes-only (`saved_run`)."
    ap.add_argument('--note', action='append', default=[], help='a line for the notes under the table')
    ap.add_argument('--notes-only', action='store_true', help='rewrite the markdown from the CSV (with the --note lines) and stop')
    ap.add_argument('--one', type=json.loads, help=argparse.SUPPRESS)  # internal: one run, in a child process
    return ap

def saved_run(out) -> tuple[list[dict], tuple[str, str, str]]:
    """The rows of `out`.csv (empty cells left out) and the (command, commit, date) its markdown names: what `--notes-only`
    rewrites the markdown from, for the scripts that write their own markdown."""
    import pandas as pd, re
    out = Path(out)
    rows = [{k: v for k, v in r.items() if v == v} for r in pd.read_csv(out.with_suffix('.csv')).to_dict('records')]
    return rows, re.search(r'^`(.*?)` at commit `(.*?)`, (\S+), on', out.with_suffix('.md').read_text(), re.M).groups()

def saved_rows(out) -> ResultsTable:
    "The rows (without the Mean row) of the results table `out`.csv, to add to; empty when there is none."
    table, csv = ResultsTable(), Path(out).with_suffix('.csv')
    if csv.exists():
        import pandas as pd
        for r in pd.read_csv(csv).to_dict('records'):
            if r['category'] != 'Mean': table.add(r)
    return table

def markdown_table(rows: list[dict], cols: list | None = None) -> str:
    "A markdown pipe table of `rows` (the keys of `cols`, default all; numbers right-aligned and floats to 4 places), with no Mean row."
    cols = cols or list(dict.fromkeys(k for r in rows for k in r))
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    cell = lambda v: '' if v is None or v != v else f'{v:.4f}' if isinstance(v, float) else str(v).replace('|', '\\|')
    right = [all(num(r.get(c)) or r.get(c) is None for r in rows) for c in cols]
    return '\n'.join(['| ' + ' | '.join(cols) + ' |', '|' + '|'.join('---:' if n else ':---' for n in right) + '|',
                      *('| ' + ' | '.join(cell(r.get(c)) for c in cols) + ' |' for r in rows)]) + '\n'
