"Test options: `slow` tests run with --runslow; `data` tests need ../shared/data and skip cleanly without it."
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent/'shared'/'data'

def pytest_addoption(parser):
    parser.addoption('--runslow', action='store_true', help='also run tests marked slow')

def pytest_collection_modifyitems(config, items):
    for item in items:
        if 'slow' in item.keywords and not config.getoption('--runslow'):
            item.add_marker(pytest.mark.skip(reason='slow: pass --runslow'))
        if 'data' in item.keywords and not SHARED_DATA.is_dir():
            item.add_marker(pytest.mark.skip(reason=f'needs {SHARED_DATA} (benchmark data beside the checkout)'))

@pytest.fixture
def shared_data() -> Path: return SHARED_DATA
