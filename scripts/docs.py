"""Build the documentation site offline, with every notebook's outputs and figures (except those of cells flagged
`#| slow`): `make docs`.

1. exec:   run each notebook as `nbdev-test` does (cells flagged `tst_flags`, e.g. `#| slow`, are skipped) on a copy in
           `_docs_build/exec/`, saving its outputs. A copy is run again only when its notebook or the package changed
           (`--force`: always).
2. proc:   `nbdev-proc-nbs` on the executed copies (show_doc, links to API names, hidden cells removed) into `_proc/`.
3. render: `_docs_build/render/`: each page named as nbdev names it (`01_backbones.ipynb` -> `backbones.html`, the name
           the API links in `_modidx.py` use), a sidebar of notebooks only, the maths pre-rendered to MathML (no
           script, no CDN: it renders offline), a `[source]` link with its line on every `show_doc`, then
           `smalldocs render` into `DEST` (default `docs/`). The sidebar follows a reader's order (`reader_order`: the
           tutorial first), figures are shown at their size, photographs as JPEG (`page_figures`), and the warnings the
           pages explain (`QUIET_WARNINGS`) are not printed into them.

Usage: python scripts/docs.py [--dest docs] [--force] [--n-workers 2]
"""
import argparse, base64, hashlib, io, json, os, re, shutil, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORK = ROOT/'_docs_build'
EXEC, RENDER = WORK/'exec', WORK/'render'

def _say(*a): print('docs:', *a, flush=True)

def _key(nb: Path) -> str:
    "What a notebook's outputs depend on: itself and the package's modules."
    h = hashlib.sha256(nb.read_bytes())
    for f in sorted((ROOT/'anomaly_fastai').glob('*.py')): h.update(f.read_bytes())
    return h.hexdigest()

def execute(force: bool = False, n_workers: int = 2, keep_going: bool = False) -> list[str]:
    "Run the notebooks whose outputs are stale into EXEC (outputs saved); returns the names run."
    EXEC.mkdir(parents=True, exist_ok=True)
    (WORK/'.gitignore').write_text('*\n')  # build products only: never committed
    keys = json.loads((WORK/'keys.json').read_text()) if (WORK/'keys.json').is_file() else {}
    nbs = sorted((ROOT/'nbs').glob('*.ipynb'))
    for stale in set(p.name for p in EXEC.glob('*.ipynb')) - {p.name for p in nbs}: (EXEC/stale).unlink()
    todo = [nb for nb in nbs if force or keys.get(nb.name) != _key(nb) or not (EXEC/nb.name).is_file()]
    for nb in todo: shutil.copyfile(nb, EXEC/nb.name)
    if todo:
        _say(f'executing {len(todo)} notebook(s): {" ".join(nb.stem for nb in todo)}')
        names = '|'.join(re.escape(nb.name) for nb in todo)
        r = subprocess.run([BIN/'nbdev-test', '--save', '--n-workers', str(n_workers), '--file-re', f'^({names})$', str(EXEC)], cwd=ROOT)
        ran = [nb for nb in todo if (EXEC/nb.name).read_bytes() != nb.read_bytes()]  # nbdev-test saves a notebook only when it passed
        for nb in ran: keys[nb.name] = _key(nb)
        (WORK/'keys.json').write_text(json.dumps(keys, indent=1))
        if r.returncode:
            failed = ' '.join(nb.name for nb in todo if nb not in ran)
            if not keep_going: sys.exit(f'docs: notebooks failed to run: {failed} (see above); the site needs every notebook to run')
            _say(f'WARNING: {failed} failed to run: their pages have no outputs')
    for f in ('_quarto.yml', 'styles.css'): shutil.copy2(ROOT/'nbs'/f, EXEC/f)
    return [nb.name for nb in todo]

def process(n_workers: int = 2):
    "nbdev's docs processors on the executed copies, into `_proc/` (incremental: only changed copies are processed)."
    from nbdev.quarto import refresh_quarto_yml
    os.chdir(ROOT)
    refresh_quarto_yml()  # writes nbs/nbdev.yml from pyproject.toml
    shutil.copy2(ROOT/'nbs'/'nbdev.yml', EXEC/'nbdev.yml')
    r = subprocess.run([BIN/'nbdev-proc-nbs', '--path', str(EXEC), '--n-workers', str(n_workers)], cwd=ROOT, capture_output=True, text=True)
    if r.returncode: sys.exit(f'docs: nbdev-proc-nbs failed:\n{r.stdout}\n{r.stderr}')

# -- maths: LaTeX to MathML, which every current browser renders without a script or a font download
_CODE = re.compile(r'(```.*?```|`[^`\n]*`)', re.S)
_DISPLAY = re.compile(r'\$\$(.+?)\$\$', re.S)
_INLINE = re.compile(r'(?<![\\$\w])\$(?=\S)([^$\n]+?)(?<=\S)\$(?![\w$])')

def _mathml(tex: str, display: bool) -> str:
    from latex2mathml.converter import convert
    return convert(tex.strip(), display='block' if display else 'inline')

def math_to_mathml(md: str) -> str:
    "Markdown with `$...$` and `$$...$$` (outside code) as MathML."
    out = []
    for i, part in enumerate(_CODE.split(md)):
        if i % 2 == 0:
            part = _DISPLAY.sub(lambda m: _mathml(m[1], True), part)
            part = _INLINE.sub(lambda m: _mathml(m[1], False), part)
        out.append(part)
    return ''.join(out)

def _front_matter(nb: dict) -> dict:
    import yaml
    c = nb['cells'][0]
    src = ''.join(c['source'])
    if c['cell_type'] == 'raw' and src.startswith('---'): return yaml.safe_load(src.strip().strip('-')) or {}
    return {}

def _site_prefix() -> str:
    "The absolute address of this site (doc_host + doc_baseurl), which nbdev writes into links to its own pages."
    from nbdev.config import get_config
    cfg = get_config()
    host, base = cfg.get('doc_host', ''), cfg.get('doc_baseurl', '/')
    return (host.rstrip('/') + '/' + base.strip('/') + '/').replace(':/', '://').replace(':///', '://') if host else ''

def _definitions() -> dict:
    "Line of every top-level function and class and of every method in the package: {'Class.method': ('mod.py', line)}."
    import ast
    found = {}
    for f in sorted((ROOT/'anomaly_fastai').glob('*.py')):
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found.setdefault(node.name, (f.name, node.lineno))
                if isinstance(node, ast.ClassDef):
                    for m in node.body:
                        if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)): found.setdefault(f'{node.name}.{m.name}', (f.name, m.lineno))
    return found

_SOURCE = re.compile(r'\[source\]\([^)]*\)(\{[^}]*\})?\n*')
_HEADING = re.compile(r'^(---\n+)(#+ +`?([\w.]+)`?)', re.M)

def source_links(md: str, defs: dict) -> str:
    "A show_doc output with its `[source]` link pointing at the symbol's line (nbdev 3 writes `#LNone`, or no link, here)."
    from nbdev.config import get_config
    blob = f"{get_config().git_url.rstrip('/')}/blob/{get_config().branch}/anomaly_fastai"
    def link(m):
        if m.group(3) not in defs: return m.group(0)
        f, line = defs[m.group(3)]
        return f'{m.group(1)}[source]({blob}/{f}#L{line}){{target="_blank" style="float:right; font-size:smaller"}}\n\n{m.group(2)}'
    return _HEADING.sub(link, _SOURCE.sub('', md), count=1)

def reader_order(nbs: list[str]) -> list[str]:
    "Notebook names in the order a reader takes them: tutorials (notebooks that export nothing), the home page, `Detector` and the methods (`@register`), then the rest, each in file order."
    def kind(name: str) -> int:
        if name == 'index.ipynb': return 1
        cells = [''.join(c['source']) for c in json.loads((ROOT/'nbs'/name).read_text())['cells'] if c['cell_type'] == 'code']
        if not any(re.search(r'^#\|\s*default_exp\s', c, re.M) for c in cells): return 0
        exported = [c for c in cells if re.search(r'^#\|\s*export\b', c)]
        return 2 if any('\n@register' in c or re.search(r'^class Detector\b', c, re.M) for c in exported) else 3
    return sorted(nbs, key=kind)  # stable: file order within each group

# warnings that the pages' prose explains, not printed into them (the executed notebooks keep them)
QUIET_WARNINGS = ('ThresholdWarning',)
_WARNING = re.compile(r'^[^\n]*:\d+: (\w+): [^\n]*\n(?:  [^\n]*\n?)*', re.M)  # `file:line: Category: message` and its source lines

def quiet_warnings(outputs: list) -> list:
    "`outputs` of a cell without the `QUIET_WARNINGS` on stderr (a stream left empty is dropped)."
    kept = []
    for o in outputs:
        if o.get('output_type') == 'stream' and o.get('name') == 'stderr':
            text = _WARNING.sub(lambda m: '' if m[1] in QUIET_WARNINGS else m[0], ''.join(o['text']))
            if not text.strip(): continue
            o = o | dict(text=text)
        kept.append(o)
    return kept

def _smaller_jpeg(png: bytes) -> bytes | None:
    "`png` as a JPEG when that is under half its size (photographs: heatmaps, galleries), else None (plots stay sharp PNGs)."
    from PIL import Image
    im = Image.open(io.BytesIO(png)).convert('RGBA')
    flat, buf = Image.new('RGB', im.size, 'white'), io.BytesIO()
    flat.paste(im, mask=im.getchannel('A'))  # transparent parts white, as the page shows them
    flat.save(buf, 'JPEG', quality=85)
    return buf.getvalue() if buf.tell() < len(png) / 2 else None

def page_figures(outputs: list) -> list:
    """PNG figures shown at the size Jupyter shows them (execnb saves them at twice it, retina, with that size in the
    output's metadata), and photographs as JPEG: a page of heatmaps stays well under 1 MB."""
    for o in outputs:
        png = o.get('data', {}).get('image/png')
        if not png: continue
        raw = base64.b64decode(''.join(png))
        mime, data = ('image/jpeg', jpg) if (jpg := _smaller_jpeg(raw)) else ('image/png', raw)
        w = o.get('metadata', {}).get('image/png', {}).get('width')
        size = f' width="{w}"' if w else ''
        o['data'] = {'text/html': f'<img src="data:{mime};base64,{base64.b64encode(data).decode()}" class="img-fluid"{size} alt="figure">'}
    return outputs

def stage():
    "`_proc/` to RENDER: pages under the names API links use, a sidebar of pages only, maths as MathML, own links relative."
    import yaml
    proc, prefix = ROOT/'_proc', _site_prefix()
    local = lambda md: md.replace(f']({prefix}', '](').replace(f'href="{prefix}', 'href="') if prefix else md
    if RENDER.exists(): shutil.rmtree(RENDER)
    RENDER.mkdir(parents=True)
    names, defs = {}, _definitions()
    for p in sorted(proc.glob('*.ipynb')):
        nb = json.loads(p.read_text())
        out = _front_matter(nb).get('output-file')
        dst = Path(out).with_suffix('.ipynb').name if out else p.name
        names[p.name] = dst
        for c in nb['cells']:
            if 'outputs' in c: c['outputs'] = page_figures(quiet_warnings(c['outputs']))
            if c['cell_type'] == 'markdown':
                c['source'] = local(math_to_mathml(source_links(''.join(c['source']), defs)))
            for o in c.get('outputs', []):  # show_doc's docstrings are Markdown outputs
                d = o.get('data', {})
                if 'text/markdown' in d: d['text/markdown'] = local(math_to_mathml(source_links(''.join(d['text/markdown']), defs)))
        (RENDER/dst).write_text(json.dumps(nb, indent=1))
    for f in ('_quarto.yml', 'nbdev.yml', 'styles.css'): shutil.copy2(proc/f, RENDER/f)
    side = yaml.safe_load((proc/'sidebar.yml').read_text())
    contents = side['website']['sidebar']['contents']
    side['website']['sidebar']['contents'] = [names[c] for c in reader_order([c for c in contents if isinstance(c, str) and c in names])]
    (RENDER/'sidebar.yml').write_text(yaml.safe_dump(side, sort_keys=False))

def render(dest: Path):
    r = subprocess.run([BIN/'smalldocs', 'render', '-q', str(RENDER)], capture_output=True, text=True)
    log = r.stdout + r.stderr
    if r.returncode: sys.exit(f'docs: smalldocs failed:\n{log}')
    noise = ('output-file is not read', 'unknown key format-links', 'format commonmark is not built', 'keep-md is ignored')
    for l in log.splitlines():
        if l.strip() and not any(n in l for n in noise): print(l)
    if broken := [l for l in log.splitlines() if 'broken link' in l]: sys.exit('docs: broken links:\n' + '\n'.join(broken))
    if dest.exists(): shutil.rmtree(dest)
    shutil.move(str(RENDER/'docs'), str(dest))

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dest', default=str(ROOT/'docs'), help='site folder (default: docs/)')
    ap.add_argument('--force', action='store_true', help='run every notebook again')
    ap.add_argument('--n-workers', type=int, default=2, help='notebooks run in parallel (default 2)')
    ap.add_argument('--keep-going', action='store_true', help='build the site even when a notebook fails (its page without outputs)')
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    execute(a.force, a.n_workers, a.keep_going); t1 = time.perf_counter()
    process(a.n_workers); t2 = time.perf_counter()
    stage(); render(Path(a.dest).absolute())
    _say(f'site: {a.dest}/index.html (run {t1 - t0:.0f} s, process {t2 - t1:.0f} s, render {time.perf_counter() - t2:.0f} s)')

if __name__ == '__main__': main()
