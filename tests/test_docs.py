"""The documentation site builds offline with every notebook's outputs (`scripts/docs.py`, run by `make docs`), and
a real headless Chromium (the system's `chromium` + `chromedriver`) finds every page loaded, every picture decoded,
no broken internal link and no raw LaTeX; it also opens the HTML report of the embedded sample."""
import os, re, shutil, subprocess, sys
from pathlib import Path
from urllib.parse import unquote, urlparse
import pytest
from test_packaging import ROOT, exports

def page_name(nb: str) -> str:
    "The page nbdev names a notebook (`01_backbones` -> `backbones.html`, `00a_tutorial` -> `tutorial.html`), the name `_modidx.py` links to."
    return re.sub(r'^\d+[a-zA-Z0-9]*_', '', nb) + '.html'

@pytest.fixture(scope='module')
def site(tmp_path_factory) -> Path:
    "The site, built into a temporary folder (notebooks executed again only where `_docs_build/` is stale); DOCS_SITE=docs tests a built one."
    if os.environ.get('DOCS_SITE'): return Path(os.environ['DOCS_SITE']).absolute()
    dest = tmp_path_factory.mktemp('site')/'docs'
    r = subprocess.run([sys.executable, ROOT/'scripts'/'docs.py', '--dest', dest], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f'docs build failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    broken = [l for l in (r.stdout + r.stderr).splitlines() if 'broken link' in l]
    assert not broken, '\n'.join(broken)
    return dest

def test_docs_site_has_a_page_per_module(site):
    assert (site/'index.html').is_file()
    for nb, mod in exports().items():
        page = site/page_name(nb)
        assert page.is_file(), f'no docs page {page.name} for module {mod} ({nb}.ipynb)'
        assert len(page.read_text()) > 2000
    pages = {p.name for p in site.glob('*.html')}
    assert pages == {'index.html', 'tutorial.html'} | {page_name(nb) for nb in exports()}, f'unexpected pages: {sorted(pages)}'  # no nbdev.yml, styles.css pages
    big = [f'{p.name} {p.stat().st_size / 1e6:.1f} MB' for p in site.glob('*.html') if p.stat().st_size > 1e6]
    assert not big, f'pages over 1 MB (make their figures smaller): {big}'
    warned = [p.name for p in site.glob('*.html') if re.search(r'cell-output-stderr">\s*<pre><code>[^<]*ThresholdWarning:', p.read_text())]
    assert not warned, f'ThresholdWarning printed into {warned}'

def test_docs_pages_show_their_figures_and_math(site):
    for page in ('metrics.html', 'twin.html', 'gradcam.html', 'report.html'):
        assert site.joinpath(page).read_text().count('<img') >= 1, f'{page}: no figure'
    heads = site.joinpath('heads.html').read_text()
    assert heads.count('<math') >= 20, 'heads.html: the formulas are not rendered to MathML'
    assert 'cdn.jsdelivr' not in heads and 'katex' not in heads.lower()
    src = re.findall(r'\[source\]\(([^)]*)\)|href="([^"]*#L[^"]*)"', site.joinpath('backbones.html').read_text())
    assert src and not any('LNone' in a + b for a, b in src), 'show_doc [source] links without a line number'

# -- in a real browser

def _chrome():
    "A headless Chromium driven through the system's chromedriver; skips the test when either is missing."
    try: from selenium import webdriver
    except ImportError: pytest.skip('selenium is not installed (pip install -e ".[dev]")')
    chromium = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')
    driver = shutil.which('chromedriver')
    if not chromium or not driver:
        pytest.skip('no system Chromium/chromedriver (Debian: apt-get install chromium chromium-driver)')
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--window-size=1280,1600'):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)

@pytest.fixture(scope='module')
def browser():
    d = _chrome()
    d.set_page_load_timeout(60)
    yield d
    d.quit()

# every <img> has loaded and decoded (naturalWidth > 0), after lazy images are made eager
_IMAGES_JS = '''
const imgs = Array.from(document.images);
imgs.forEach(i => i.loading = 'eager');
await Promise.all(imgs.map(i => i.decode().catch(() => null)));
return imgs.map(i => [i.currentSrc.slice(0, 80), i.complete, i.naturalWidth]);
'''
_TEXT_JS = '''
const b = document.body.cloneNode(true);
b.querySelectorAll('pre, code, script, style, math').forEach(e => e.remove());
return b.innerText;
'''

def _images(browser) -> list:
    return browser.execute_script('return (async () => {' + _IMAGES_JS + '})()')

def _bad_images(browser) -> list: return [i for i in _images(browser) if not (i[1] and i[2] > 0)]

def test_site_in_a_browser(site, browser):
    ids = {}
    def anchors(page: Path) -> set:
        if page not in ids: ids[page] = set(re.findall(r'\sid="([^"]+)"', page.read_text()))
        return ids[page]
    n_img, problems = 0, []
    for page in sorted(site.glob('*.html')):
        browser.get(page.as_uri())
        assert browser.execute_script('return document.readyState') == 'complete', page.name
        assert browser.title, f'{page.name}: no title'
        imgs = _images(browser)
        n_img += len(imgs)
        problems += [f'{page.name}: image not decoded: {i[0]}' for i in imgs if not (i[1] and i[2] > 0)]
        text = browser.execute_script(_TEXT_JS)
        if m := re.search(r'\$\$|\\(frac|theta|cos|lVert|mathrm|hat|sum)\b', text): problems.append(f'{page.name}: raw LaTeX {m[0]!r}')
        for href in browser.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"):
            u = urlparse(href)
            if u.scheme != 'file': continue  # other sites are not reachable offline
            target = Path(unquote(u.path))
            if not target.exists(): problems.append(f'{page.name}: broken link {href}')
            elif u.fragment and target.suffix == '.html' and unquote(u.fragment) not in anchors(target):
                problems.append(f'{page.name}: link to a missing anchor {href}')
    assert not problems, '\n'.join(problems[:30])
    assert n_img >= 10, f'only {n_img} images on the whole site'

def test_tutorial_first_with_its_figures(site, browser):
    "The tutorial is the first entry of the sidebar, and its figures (heatmaps, top losses, threshold) load."
    browser.get((site/'index.html').as_uri())
    links = browser.execute_script("return Array.from(document.querySelectorAll('#quarto-sidebar a[href]')).map(a => a.href)")
    assert links and links[0].endswith('/tutorial.html'), links[:3]
    browser.get((site/'tutorial.html').as_uri())
    imgs = _images(browser)
    assert len(imgs) >= 3, f'tutorial.html: {len(imgs)} figures'
    assert not [i for i in imgs if not (i[1] and i[2] > 0)], imgs

def test_site_figures_are_drawn(site, browser, tmp_path):
    "A screenshot of the first figure of the metrics page shows a picture, not a blank box."
    from PIL import Image
    from selenium.webdriver.common.by import By
    browser.get((site/'metrics.html').as_uri())
    img = next(i for i in browser.find_elements(By.TAG_NAME, 'img') if i.get_attribute('src').startswith('data:image/png'))
    # the figure alone in the window, screenshotted: element screenshots time out in headless Chromium on a busy CPU
    browser.get(img.get_attribute('src'))  # Chromium shows it centred on a plain dark page: every other colour is the figure's
    (tmp_path/'window.png').write_bytes(browser.get_screenshot_as_png())
    shot = Image.open(tmp_path/'window.png').convert('RGB')
    assert shot.width > 100 and len(shot.getcolors(1 << 20) or range(1 << 20)) > 20, 'the figure screenshot is (nearly) blank'

def test_report_in_a_browser(browser, tmp_path):
    "The report.html of the embedded sample opens offline with every picture decoded."
    code = ('from anomaly_fastai.data import sample_dataset\nfrom anomaly_fastai.knn import KNNDetector\nfrom anomaly_fastai.evaluate import evaluate_detector\n'
            'from anomaly_fastai.report import write_report\nimport sys\nds = sample_dataset()\n'
            'det = KNNDetector().fit(ds, progress=False)\nm, res = evaluate_detector(det, ds, progress=False)\n'
            'write_report(sys.argv[1], det, ds, m, res, n_gallery=8)\n')
    subprocess.run([sys.executable, '-c', code, tmp_path], check=True, capture_output=True)
    page = tmp_path/'report.html'
    browser.get(page.as_uri())
    imgs = _images(browser)
    assert len(imgs) == 1 + 2 * 8, imgs
    assert not [i for i in imgs if not (i[1] and i[2] > 0)]
    text = browser.execute_script('return document.body.innerText')
    assert 'Decisions at the saved threshold' in text and 'nearest good training image' in text
    assert not re.search(r'(src|href)="(?!data:|#)', page.read_text()), 'report.html must not load anything from elsewhere'
