"""One error family the library raises for what a user can fix (bad argument, bad workspace, ...).

The CLI turns a ``FacesetError`` into exit 2 and its one-line message; anything else is a bug:
exit 1 with a short "internal error" line (the traceback only with ``--debug``).
"""

from __future__ import annotations


class FacesetError(Exception):
    """Base of every user-facing error: ``str(e)`` is one line a person can act on."""


class UsageError(FacesetError, ValueError):
    """A bad argument or a bad combination of arguments."""


class WorkspaceError(FacesetError):
    """The workspace is missing, not a workspace, too new, corrupt, read-only, or the disk is full."""


class NotFound(FacesetError, LookupError):
    """A named thing (person, export, model, backbone, file) does not exist."""
