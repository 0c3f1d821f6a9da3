"""`faceset serve`: a local review app over one workspace (FastAPI, server-rendered, vendored assets).

:func:`create_app` builds the ASGI app; :func:`serve` runs it with uvicorn until Ctrl-C. Binding
anything but a loopback address needs a token (one is generated when none is given).
"""

from __future__ import annotations

import ipaddress
import sys
from typing import Callable

from ..errors import UsageError
from ..workspace import Workspace
from .app import MAX_UPLOAD_BYTES, create_app
from .security import new_token

__all__ = ["create_app", "serve", "is_loopback"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(ws: Workspace, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          owner_token: str | None = None, max_upload: int = MAX_UPLOAD_BYTES,
          announce: Callable[[str], None] | None = None) -> None:
    """Serve ``ws`` until interrupted. ``announce`` gets the URL line(s) (default: print to stdout)."""
    if not 0 <= int(port) <= 65535:
        raise UsageError(f"--port must be 0..65535, got {port}")
    if token is not None and len(token) < 8:
        raise UsageError("--token must be at least 8 characters")
    local = is_loopback(host)
    generated = False
    if not local and token is None:
        token, generated = new_token(), True
    allowed = None
    import socket

    import uvicorn

    # Bind first so port 0 works and the printed URL is the real one.
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), int(port)))
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    real_port = sock.getsockname()[1]
    if local and token is None:
        names = {host, "127.0.0.1", "localhost", "[::1]"}
        allowed = {f"{h}:{real_port}".lower() for h in names}
    app = create_app(ws, token=token, owner_token=owner_token, allowed_hosts=allowed, max_upload=max_upload)
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    say = announce or (lambda s: (sys.stdout.write(s + "\n"), sys.stdout.flush()))
    say(f"faceset review app: http://{shown}:{real_port}/" + ("login" if token else ""))
    if generated:
        say(f"token (give it on the login page): {token}")
    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False,
                            date_header=False, timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: stopping is the normal way out
        pass
    finally:
        sock.close()
    say("stopped")
