"""Reaching Ray: waiting for a cluster to answer, and starting one of our own."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator

log = logging.getLogger("flowstage.executors.ray.connect")


def probe(address: str, timeout: float) -> None:
    """Wait until a Ray server answers at ``address`` (``host:port`` or
    ``ray://host:port``), for at most ``timeout`` seconds (a cluster that is still
    starting gets that long). Ray's own connect retries for about 20 s whatever it finds.

    :raises OSError: nothing accepted a connection in time, or what did is not a gRPC
        server (Ray's GCS and Ray Client server both are)
    """
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return
    host = host.strip("[]") or "127.0.0.1"
    deadline = time.monotonic() + timeout
    pause = 0.05
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((host, int(port)), timeout=max(left, 0.01)):
                break
        except OSError:
            if time.monotonic() + pause >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 1.0)
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return  # a TLS server would not answer the plain HTTP/2 greeting below
    left = max(deadline - time.monotonic(), 0.5)
    try:
        answered = _answers_http2(host, int(port), left)
    except OSError:
        answered = False
    if not answered:
        raise OSError(
            "something listens there, but it does not answer as a Ray server (gRPC over HTTP/2)"
        )


#: what an HTTP/2 client sends first: the connection preface and an empty SETTINGS frame
_HTTP2_GREETING = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _answers_http2(host: str, port: int, timeout: float) -> bool:
    """Whether the server at ``host:port`` answers an HTTP/2 greeting with its SETTINGS
    frame, as gRPC servers (Ray's GCS, the Ray Client server) do."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(_HTTP2_GREETING)
        header = b""
        while len(header) < 9:
            chunk = sock.recv(9 - len(header))
            if not chunk:
                return False
            header += chunk
    return header[3] == 4  # the frame type of SETTINGS


@contextlib.contextmanager
def quiet_token_notice(quiet: bool) -> Iterator[None]:
    """Keep Ray's notice that it enabled token authentication off the terminal while it
    starts a Ray of our own (quiet logs; the token protects that Ray all the same)."""
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def driver_paths() -> list[str]:
    """Folders on the driver's ``sys.path`` that a fresh interpreter would not have
    (the interpreter's own library and site-packages folders are left out)."""

    prefixes = tuple(
        {os.path.realpath(p) + os.sep for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    )
    paths = []
    for entry in sys.path:
        path = os.path.realpath(entry or os.curdir)
        if os.path.isdir(path) and not (path + os.sep).startswith(prefixes) and path not in paths:
            paths.append(path)
    return paths
