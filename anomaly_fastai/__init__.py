__version__ = "0.1.0"

import warnings
# fastai 2.8 decorates a few layers with torch.jit.script, which torch >= 2.10 reports as deprecated on every import:
# noise for our users that they cannot act on.
warnings.filterwarnings('ignore', message=r'`torch.jit.script` is deprecated', category=FutureWarning)
