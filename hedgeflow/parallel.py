"""One lock serialising entry into hedgeflow's parallel numba kernels.

Under numba's ``workqueue`` threading layer (the fallback when neither TBB nor
OpenMP is available) a parallel kernel may not be entered by two Python threads at
once, not even two different kernels; sweeps run in a thread pool, so every
parallel kernel (the sweep's, CSCV's) is called holding this lock. Each kernel
already uses every core.
"""

from __future__ import annotations

import threading

__all__ = ["KERNEL_LOCK"]

KERNEL_LOCK = threading.Lock()
