"""Industrial visual anomaly detection with fastai: anomaly twins, metric learning, patch features"""

__version__ = "0.2.0"

import warnings
# fastai 2.8 decorates a few layers with torch.jit.script, which torch >= 2.10 reports as deprecated on every import:
# noise for our users that they cannot act on.
warnings.filterwarnings('ignore', message=r'`torch.jit.script` is deprecated', category=FutureWarning)
