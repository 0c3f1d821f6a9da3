"""What the benchmarks share: time a call and sample its process's peak RSS."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path


def timed(fn):
    """(result, seconds, peak RSS MiB, peak MiB above the starting RSS): RSS sampled every 5 ms, so memory
    allocated in C++ (dlib, faiss) counts as well as numpy's."""
    import psutil

    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t = time.perf_counter()
    out = fn()
    s = time.perf_counter() - t
    done.set()
    th.join()
    p = max(peak[0], proc.memory_info().rss)
    return out, round(s, 4), round(p / 2**20, 1), round((p - base) / 2**20, 1)


def shim_pkg_resources() -> None:
    """face_recognition_models imports pkg_resources (gone from new setuptools): provide the one call it uses."""
    if "pkg_resources" in sys.modules:
        return
    try:
        import pkg_resources  # noqa: F401
        return
    except ImportError:
        pass
    import importlib.util
    import types

    def resource_filename(package, rel):
        return str(Path(importlib.util.find_spec(package).origin).parent / rel)

    sys.modules["pkg_resources"] = types.SimpleNamespace(resource_filename=resource_filename)
