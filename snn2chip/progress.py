"""Progress bars that leave multiprocessing untouched.

Lava's import runs ``multiprocessing.set_start_method('fork')``, which fails once anything has
used the default multiprocessing context; tqdm's default lock is a multiprocessing lock. So
snn2chip's bars use a thread lock, and Lava can still be imported after a bar was shown.
"""

from __future__ import annotations

import threading

from tqdm import tqdm

tqdm.set_lock(threading.RLock())


def bar(iterable, desc: str, unit: str, enabled: bool):
    """``iterable`` wrapped in a progress bar on stderr when ``enabled``."""
    return tqdm(iterable, desc=desc, unit=unit, disable=not enabled)
