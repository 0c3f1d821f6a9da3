"""Privacy: forget-me-by-selfie erasure, the blocklist, the consent ledger and the audit log.

``forget(ws, selfies)`` finds a person's faces from their photos and erases every trace
(rows, chips, crops, stored images, caches), blurs them where they are a bystander, and
blocks them from later scans. ``consent.effective_consent(ws)`` gives each image/face its
basis; ``audit.entries(ws)`` reads the log.
"""

from __future__ import annotations


def __getattr__(name: str):
    # forget pulls in the scan stack (dlib): load it only when asked.
    if name in ("forget", "find_matches", "erase", "ForgetReport", "ForgetError"):
        from . import forget as _f

        return getattr(_f, name)
    raise AttributeError(name)
