"""A loopback HTTP proxy in front of the local Mailchimp server that loses answers on purpose: it
forwards chosen requests, lets the server act on them, and then drops the connection instead of
answering, as a proxy or a network fault between us and Mailchimp would."""

from __future__ import annotations

import http.client
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class LossyProxy:
    """Forwards everything to ``target_port``; drops the answer of the first ``drop`` requests that
    match ``method`` and ``path``. ``dropped`` counts the answers it lost."""

    def __init__(self, target_port: int, *, method: str, path: str, drop: int = 1) -> None:
        self.target_port = target_port
        self.method, self.path, self.left = method, path, drop
        self.dropped = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _take_drop(self, method: str, path: str) -> bool:
        with self._lock:
            if self.left and method == self.method and path.partition("?")[0] == self.path:
                self.left -= 1
                self.dropped += 1
                return True
            return False

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.target_port, timeout=60)
                try:
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    answer = upstream.getresponse()
                    content = answer.read()
                finally:
                    upstream.close()
                if proxy._take_drop(self.command, self.path):
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)  # the server acted; the client hears nothing
                    return
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, format: str, *args: object) -> None:
                return None

        return Handler

    def __enter__(self) -> LossyProxy:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
