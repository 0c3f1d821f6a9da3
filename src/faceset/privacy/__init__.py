"""Privacy: forget-me-by-selfie erasure, redaction, the blocklist, the consent ledger and the audit log.

``forget(ws, selfies)`` finds a person's faces from their photos (find: ``certain`` matches, and
``review`` ones erased only when confirmed or with ``include_uncertain``), decides what goes
(``plan``: an ``ErasurePlan``) and erases every trace (``apply``: rows, chips, crops, stored
images, caches), pixelating them where they are a bystander, and blocks them from later scans.
``redact`` is the one implementation of hiding a face (shared with scan's blocklist);
``consent.effective_consent(ws)`` gives each image/face its basis; ``audit.entries(ws)`` reads the log.
"""

from __future__ import annotations

# The function shadows its module on purpose: `faceset.privacy.forget(ws, selfies)` is the contract.
from .forget import (  # noqa: E402
    CERTAIN,
    REVIEW,
    ErasurePlan,
    ForgetError,
    ForgetReport,
    Match,
    apply,
    erase,
    find_matches,
    forget,
    plan,
)

__all__ = ["CERTAIN", "REVIEW", "ErasurePlan", "ForgetError", "ForgetReport", "Match", "apply", "erase",
           "find_matches", "forget", "plan"]
