"""A TCP proxy for fault injection: forward, blackhole, or hold back responses.

Put it between cdc and a server (MariaDB or Elasticsearch) and change its mode
while the test runs:

* `forward`: pass bytes both ways (the default).
* `blackhole`: keep every connection open but drop all bytes, like a network
  that silently loses packets (no RST, no FIN): only timeouts can notice.
* `hold`: pass requests on to the server but keep its responses back until the
  mode changes, so the client cannot know whether a request was executed.
* `cut()`: close every connection and refuse new ones until `restore()`
  (a server that is down, as opposed to a network that is silent).
"""

from __future__ import annotations

import socket
import threading
import time


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int):
        self.upstream = (upstream_host, upstream_port)
        self.mode = "forward"
        self.refusing = False
        self.connections = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def set_mode(self, mode: str) -> None:
        assert mode in ("forward", "blackhole", "hold")
        self.mode = mode

    def cut(self) -> None:
        self.refusing = True
        sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def restore(self) -> None:
        self.refusing = False

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            self.connections += 1
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, is_response: bool) -> None:
        try:
            while not self._closed.is_set():
                data = src.recv(65536)
                if not data:
                    break
                while is_response and self.mode == "hold" and not self._closed.is_set():
                    time.sleep(0.05)
                if self.mode == "blackhole":
                    continue  # swallowed: the peer hears nothing, not even a reset
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    if self.mode != "blackhole":
                        sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
