"""Write README.md from nbs/index.ipynb (nbdev-readme needs Quarto, which cannot be installed offline).

Markdown cells are copied as they are; code cells become ```python blocks. Run by `make export`.
"""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def readme(nb=ROOT/'nbs'/'index.ipynb') -> str:
    parts = []
    for c in json.loads(Path(nb).read_text())['cells']:
        src = ''.join(c['source']).strip()
        if not src or src.startswith('#|'): continue
        parts.append(src if c['cell_type'] == 'markdown' else f'```python\n{src}\n```')
    head = '<!-- Generated from nbs/index.ipynb by scripts/readme.py (make export): edit the notebook. -->\n\n'
    return head + '\n\n'.join(parts) + '\n'

if __name__ == '__main__': (ROOT/'README.md').write_text(readme())
