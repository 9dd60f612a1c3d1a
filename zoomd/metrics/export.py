"""Where metrics go: an HTTP endpoint (a thread, loopback unless told otherwise) and a
node_exporter textfile written atomically (temp file, fsync, rename)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer

from zoomd.errors import ZoomdError
from zoomd.metrics.exposition import CONTENT_TYPE

Render = Callable[[], str]


def parse_listen(text: str) -> tuple[str, int]:
    """"PORT", "HOST:PORT" or "[V6]:PORT"; a bare port binds loopback only."""
    text = text.strip()
    host, port = "127.0.0.1", text
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    elif ":" in text:
        host, _, port = text.rpartition(":")
    bad_port = not port.isdigit() or not 0 <= int(port) < 65536  # 0: any free port (tests)
    if bad_port or any(c.isspace() for c in host):
        raise ZoomdError(f"metrics listen address {text!r}: expected PORT or HOST:PORT")
    return host or "127.0.0.1", int(port)


def _server_class(host: str) -> type[HTTPServer]:
    if ":" not in host:
        return HTTPServer
    import socket

    class V6(HTTPServer):
        address_family = socket.AF_INET6

    return V6


def _cannot_listen(host: str, port: int, exc: OSError) -> ZoomdError:
    return ZoomdError(f"metrics: cannot listen on {host}:{port} ({exc.strerror or exc})")


def probe_listen(listen: str) -> tuple[ZoomdError, int | None] | None:
    """Bind the address as MetricsServer will and let it go again, so that `zoomd check`
    and a reload refuse what `run` would: None, or the error `run` would raise and its
    errno (EADDRINUSE: perhaps the running zoomd's own). A malformed address raises."""
    host, port = parse_listen(listen)
    try:
        server = _server_class(host)((host, port), BaseHTTPRequestHandler)
    except OSError as exc:
        return _cannot_listen(host, port, exc), exc.errno
    server.server_close()
    return None


def check_textfile(path: str) -> None:
    """The textfile's directory must exist: else every write, every interval, fails."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise ZoomdError(f"metrics: textfile {path}: {directory} is not a directory")


class MetricsServer:
    """GET /metrics on a small HTTP server in a daemon thread."""

    def __init__(self, listen: str, render: Render) -> None:
        host, port = parse_listen(listen)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = render().encode()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        try:
            self.server = _server_class(host)((host, port), Handler)
        except OSError as exc:
            raise _cannot_listen(host, port, exc) from None
        self.address = self.server.server_address[:2]
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        name="zoomd-metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5.0)


def write_textfile(path: str, text: str) -> None:
    """Replace `path` atomically: node_exporter never reads half a file."""
    # The directory as the kernel reaches it (not abspath: `link/..` is the parent of
    # the link's target), so that the rename below stays within it.
    directory = os.path.realpath(os.path.dirname(path) or ".")
    fd, tmp = tempfile.mkstemp(prefix=".zoomd-", suffix=".prom.tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            # On the descriptor, not the name: root's chmod by name would follow a
            # symlink put in the temporary file's place.
            os.fchmod(handle.fileno(), 0o644)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
