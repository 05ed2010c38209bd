"""Keep-alive HTTP(S)/1.1 connections for the lean read path (clouds/raw_reads.py): :class:`Pool`.

Why not urllib3: at ~50,000 small GETs a discovery, urllib3's per-request bookkeeping
(pool-key building, retries and timeout objects, response wrappers) is half the client's CPU
per read. Why not ``http.client`` either: its header handling (a ``putheader`` call per header,
then the response headers parsed into an ``email.message.Message`` by the email package's
feed parser) was half of the 0.155 ms of client CPU a read still cost; the request is written
here in one piece and the answer's status line, headers and body read off a buffered socket
file (0.07 ms a read, measured on keypair listings against the simulator).

What a client must do is kept: an idle connection the server has closed meanwhile
(keep-alive timeout) is noticed before it is reused (a zero-timeout poll on its socket, like
``urllib3.util.wait_for_read``) and replaced; a connection the server asked to close, or whose
answer ends at the end of the stream, is not reused; a body is delimited by Content-Length or
chunked transfer coding, and a short one raises ``http.client.IncompleteRead``; URLs and header
values with control characters are refused (as ``http.client`` refuses them).

HTTPS: the connection trusts what :class:`Trust` says, which clouds/raw_reads.py takes from the
SDK's session, so that these reads trust exactly what the SDK's own requests trust (a CA file
or directory, or requests' CA bundle, or nothing at all), present the same client certificate,
and check the host name as requests does. Only the standard library's public ``ssl`` API.
"""

from __future__ import annotations

import http.client
import os
import re
import select
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urlsplit

MAX_IDLE = 32  # idle connections kept per host: more than any worker pool of ours
MAX_LINE = 65536  # longest status or header line accepted (as http.client)
MAX_HEADERS = 100  # most header lines accepted in an answer (as http.client)
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")  # not allowed in a request target
_UNSAFE_VALUE = re.compile(r"[\r\n\x00]")  # not allowed in a header value


@dataclass(frozen=True)
class Trust:
    """What an HTTPS connection verifies the server with, and what it presents.

    ``verify``: False (or empty) checks nothing; True, the CA bundle ``ca_bundle`` (raw_reads
    gives requests' own, ``requests.certs.where()``; None: the system's store); a path, that
    CA file or, when a directory, that hashed CA directory (requests' rules). ``cert``: a
    client certificate file (the key in it), or (certificate, key).
    """

    verify: bool | str = True
    cert: str | tuple[str, str] | None = None
    ca_bundle: str | None = field(default=None, compare=False)

    def context(self) -> ssl.SSLContext:
        """A client context; raises OSError for a CA, certificate or key file that is not
        there, ssl.SSLError for one that is not valid."""
        if not self.verify:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self.verify is True and self.ca_bundle is None:
            context = ssl.create_default_context()
        else:
            location = self.ca_bundle if self.verify is True else self.verify
            if not location or not os.path.exists(location):
                raise FileNotFoundError(f"Could not find a suitable TLS CA certificate bundle, "
                                        f"invalid path: {location}")
            if os.path.isdir(location):
                context = ssl.create_default_context(capath=location)
            else:
                context = ssl.create_default_context(cafile=location)
        if self.cert:
            certfile, keyfile = (self.cert if isinstance(self.cert, tuple)
                                 else (self.cert, None))
            context.load_cert_chain(certfile, keyfile)
        return context


@dataclass(frozen=True)
class Answer:
    """An answer, read in full."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class _Connection:
    """One socket and its buffered reader."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader: BinaryIO = sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


Key = tuple[str, str, int]


class Pool:
    """Idle keep-alive connections per (scheme, host, port); thread-safe."""

    def __init__(self, *, timeout: float, trust: Trust | None = None) -> None:
        self._timeout = timeout
        self._idle: dict[Key, list[_Connection]] = {}
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None
        self._trust = trust or Trust()

    def _context(self) -> ssl.SSLContext:
        with self._lock:  # made once: loading a CA bundle costs milliseconds
            if self._ssl is None:
                self._ssl = self._trust.context()
            return self._ssl

    def get(self, url: str, headers: dict[str, str]) -> Answer:
        """GET ``url``; raises OSError or http.client.HTTPException when no full answer came."""
        return self.request("GET", url, headers)

    def request(self, method: str, url: str, headers: dict[str, str],
                body: bytes | None = None) -> Answer:
        """One request (``body`` sent with its Content-Length); raises OSError or
        http.client.HTTPException when no full answer came. Never sent twice: a request that
        failed may or may not have reached the server, which only its caller can judge."""
        parts = urlsplit(url)
        scheme = parts.scheme
        port = parts.port or (443 if scheme == "https" else 80)
        host = parts.hostname or ""
        key = (scheme, host, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = _request(target, parts.netloc, headers, method, body)
        conn = self._take(key)
        try:
            conn.sock.sendall(request)
            answer, keep = _read_answer(conn.reader, head=method == "HEAD")
        except BaseException:
            conn.close()
            raise
        if keep:
            self._give(key, conn)
        else:
            conn.close()
        return answer

    def _take(self, key: Key) -> _Connection:
        with self._lock:
            idle = self._idle.get(key)
            while idle:
                conn = idle.pop()
                if _alive(conn.sock):
                    return conn
                conn.close()
        scheme, host, port = key
        sock = socket.create_connection((host, port), timeout=self._timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small requests
        if scheme == "https":
            try:
                sock = self._context().wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        return _Connection(sock)

    def _give(self, key: Key, conn: _Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < MAX_IDLE:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            for idle in self._idle.values():
                for conn in idle:
                    conn.close()
            self._idle.clear()


def _request(target: str, netloc: str, headers: dict[str, str], method: str = "GET",
             body: bytes | None = None) -> bytes:
    if _UNSAFE.search(target) or _UNSAFE.search(method):
        raise http.client.InvalidURL(f"URL can't contain control characters: {target!r}")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {netloc.rpartition('@')[2]}",
             "Accept-Encoding: identity"]
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    for name, value in headers.items():
        if _UNSAFE_VALUE.search(value) or _UNSAFE.search(name):
            raise ValueError(f"invalid header {name!r}")
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1") + (body or b"")


def _read_answer(reader: BinaryIO, *, head: bool = False) -> tuple[Answer, bool]:
    """The answer on ``reader`` and whether the connection may be used again (``head``: the
    answer to a HEAD, which has no body whatever its headers say)."""
    while True:
        version, status, reason = _status_line(reader)
        headers = _header_lines(reader)
        if status != 100:  # 100 Continue: the real answer follows
            break
    fields = {name.lower(): value for name, value in headers}
    connection = fields.get("connection", "").lower()
    keep = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
    if head or status in (204, 304) or 100 <= status < 200:
        body = b""
    elif "chunked" in fields.get("transfer-encoding", "").lower():
        body = _chunked(reader)
    elif "content-length" in fields:
        try:
            length = int(fields["content-length"])
        except ValueError:
            raise http.client.HTTPException(
                f"bad Content-Length {fields['content-length']!r}") from None
        body = reader.read(length)
        if len(body) < length:
            raise http.client.IncompleteRead(body, length - len(body))
    else:  # delimited by the end of the stream
        body = reader.read()
        keep = False
    return Answer(status, reason, headers, body), keep


def _line(reader: BinaryIO) -> bytes:
    line = reader.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise http.client.LineTooLong("header line")
    return line


def _status_line(reader: BinaryIO) -> tuple[str, int, str]:
    line = _line(reader)
    if not line:
        raise http.client.RemoteDisconnected("Remote end closed connection without response")
    version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or len(code) != 3 or not code.isdigit():
        raise http.client.BadStatusLine(line.decode("latin-1"))
    return version, int(code), reason.strip()


def _header_lines(reader: BinaryIO) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    while True:
        line = _line(reader)
        if line in (b"\r\n", b"\n", b""):
            return headers
        if len(headers) >= MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise http.client.HTTPException(f"malformed header line {line!r}")
        headers.append((name.strip(), value.strip()))


def _chunked(reader: BinaryIO) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = _line(reader).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise http.client.IncompleteRead(b"".join(parts)) from None
        if size == 0:
            while _line(reader) not in (b"\r\n", b"\n", b""):
                pass  # trailer fields: not used
            return b"".join(parts)
        chunk = reader.read(size)
        if len(chunk) < size:
            raise http.client.IncompleteRead(b"".join(parts) + chunk, size - len(chunk))
        parts.append(chunk)
        reader.read(2)  # the CRLF closing the chunk


def _alive(sock: socket.socket) -> bool:
    """An idle connection is usable unless its socket is readable: a server that closed it
    (or sent anything unasked) makes it so."""
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return not poller.poll(0)
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable
