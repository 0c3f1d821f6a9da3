"""Privacy: forget-me-by-selfie erasure, the blocklist, the consent ledger and the audit log.

``forget(ws, selfies)`` finds a person's faces from their photos and erases every trace
(rows, chips, crops, stored images, caches), blurs them where they are a bystander, and
blocks them from later scans. ``consent.effective_consent(ws)`` gives each image/face its
basis; ``audit.entries(ws)`` reads the log.
"""

from __future__ import annotations

# The function shadows its module on purpose: `faceset.privacy.forget(ws, selfies)` is the contract.
from .forget import ForgetError, ForgetReport, erase, find_matches, forget  # noqa: E402

__all__ = ["ForgetError", "ForgetReport", "erase", "find_matches", "forget"]
