"""clouds/http_pool.py's HTTP/1.1 reading against a raw socket server sending given answers
(the framings the simulator does not use: chunked, close-delimited, 100 Continue, short)."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from collections.abc import Iterator

import pytest

from migrator.clouds.http_pool import Pool


class RawServer:
    """Answers each request read on a connection with the next of ``answers`` (raw bytes);
    an answer ending in b"<close>" is sent without it and the connection closed."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.answers:
            conn, _ = self._listener.accept()
            self.connections += 1
            with conn:
                reader = conn.makefile("rb")
                while self.answers:
                    request = b""
                    while not request.endswith(b"\r\n\r\n"):
                        line = reader.readline()
                        if not line:
                            break
                        request += line
                    if not request:
                        break
                    self.requests.append(request)
                    answer = self.answers.pop(0)
                    closing = answer.endswith(b"<close>")
                    conn.sendall(answer.removesuffix(b"<close>"))
                    if closing:
                        break
                with contextlib.suppress(OSError):  # the reader holds the socket open else
                    conn.shutdown(socket.SHUT_RDWR)
                reader.close()

    def url(self, path: str = "/x") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def pool() -> Iterator[Pool]:
    found = Pool(timeout=5)
    yield found
    found.close()


def test_content_length_answers_reuse_the_connection(pool: Pool) -> None:
    server = RawServer([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\n{}",
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\n[1]"])
    first = pool.get(server.url("/a?b=c"), {"Accept": "application/json"})
    second = pool.get(server.url(), {})
    assert (first.status, first.body, ("X-A", "1") in first.headers) == (200, b"{}", True)
    assert (second.status, second.reason, second.body) == (404, "Not Found", b"[1]")
    assert server.connections == 1
    assert server.requests[0].startswith(b"GET /a?b=c HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nAccept: application/json\r\n" in server.requests[0]


def test_chunked_and_continue_answers(pool: Pool) -> None:
    server = RawServer([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"])
    answer = pool.get(server.url(), {})
    assert (answer.status, answer.body) == (200, b"abcde")


def test_close_delimited_answer_is_not_reused(pool: Pool) -> None:
    server = RawServer([b"HTTP/1.1 200 OK\r\n\r\nuntil the end<close>",
                        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n1",
                        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2"])
    assert pool.get(server.url(), {}).body == b"until the end"
    assert pool.get(server.url(), {}).body == b"1"  # asked to close: a new connection next
    assert pool.get(server.url(), {}).body == b"2"
    assert server.connections == 3


def test_short_body_and_silent_close_raise(pool: Pool) -> None:
    server = RawServer([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort<close>",
                        b"<close>"])
    with pytest.raises(http.client.IncompleteRead):
        pool.get(server.url(), {})
    with pytest.raises(http.client.RemoteDisconnected):
        pool.get(server.url(), {})


def test_control_characters_are_refused(pool: Pool) -> None:
    with pytest.raises(http.client.InvalidURL):
        pool.get("http://127.0.0.1:9/a b", {})
    with pytest.raises(ValueError, match="invalid header"):
        pool.get("http://127.0.0.1:9/", {"X-Bad": "a\r\nInjected: 1"})
