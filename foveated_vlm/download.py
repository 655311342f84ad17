"""Bounded HTTP(S) downloads: the one function through which the library fetches a URL (the video processor's URL
inputs, the WebVid stream), so a hostile or broken server can neither hold a call nor read anything but the web.

What `download` guarantees, whatever the server does:

- **An overall deadline.** An attempt ends within `timeout` seconds from connecting to the last byte. A socket
  timeout alone restarts with every byte received, so a server trickling its status line, headers or body a byte
  every half second would hold the call for as long as it liked; here a watchdog shuts the socket down at the
  deadline, which wakes the blocked read. (Name resolution runs before the clock and keeps the resolver's timeouts.)
- **A size cap.** At most `max_bytes`: a larger `Content-Length` is refused before the body is read, and a body
  that runs past the cap is stopped there; a body shorter than its `Content-Length` is an error, never a silent
  prefix.
- **http and https only.** Other schemes (`file://`, `ftp://`, `data:`, ...) are refused, and so is a redirect to
  one (urllib's own redirect handler follows `ftp://`), so a URL taken from data can never read a local file or
  speak another protocol. At most `MAX_REDIRECTS` redirects.
- **Clear errors.** Failures raise `DownloadError`, which names the URL, a short `reason` and a detail. Reasons:
  "http_<status>", "timeout", "too_large", "truncated", "connection", "not_http" (the reply is not HTTP: a garbage
  status line), "unsupported_scheme", "redirect" (a loop or too many), "bad_url". `transient` says whether a
  second try may pass (timeouts, 5xx/408/425/429, resets, cut-off bodies; never a 404), and only those are retried.

Only the standard library is used: this module is saved beside checkpoints with the video processor's code.
"""

import functools
import http.client
import itertools
import logging
import math
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

__all__ = ["HTTP_SCHEMES", "MAX_REDIRECTS", "DownloadError", "check_download_bounds", "download", "looks_like_url"]

logger = logging.getLogger(__name__)

HTTP_SCHEMES = ("http", "https")
MAX_REDIRECTS = 5
# Statuses worth a second try: the server or a proxy was busy or slow, not the resource wrong.
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_CHUNK = 1 << 16
# A string that names a URL rather than a local path: `scheme://...`, or the schemes written without slashes.
_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]+://|data:|file:)", re.IGNORECASE)
_SHOWN_URL_CHARS = 200  # a data: URL may hold a whole video: messages show its start only
_WATCHDOG_REPEAT_S = 0.05


class DownloadError(OSError):
    """A download that failed or was refused: the `url`, a short `reason` ("http_404", "timeout", ...), a `detail`,
    and whether a retry may help (`transient`)."""

    def __init__(self, url: str, reason: str, detail: str, transient: bool):
        self.url, self.reason, self.detail, self.transient = url, reason, detail, transient
        shown = url if len(url) <= _SHOWN_URL_CHARS else url[:_SHOWN_URL_CHARS] + "..."
        super().__init__(f"cannot download {shown}: {reason} ({detail})")


def looks_like_url(text: str) -> bool:
    """Whether `text` is written as a URL (`scheme://...`, `data:...`, `file:...`) rather than as a local path."""
    return bool(_URL.match(text))


def download(url: str, *, timeout: float, max_bytes: int, retries: int = 0, backoff: float = 0.5) -> bytes:
    """GET the http(s) `url` -> its body, bounded as the module docstring says.

    Args:
        url: an http or https URL; anything else raises `DownloadError` with reason "unsupported_scheme".
        timeout: seconds one attempt may take in all (connect, headers and body together).
        max_bytes: the largest body accepted.
        retries: transient failures are tried again up to this many times, after `backoff * 2**i` seconds.
    Raises `DownloadError` with the last attempt's reason; `ValueError` for bounds that are not positive numbers.
    """
    check_download_bounds(timeout=timeout, max_bytes=max_bytes, retries=retries, backoff=backoff)
    _check_scheme(url)
    for attempt in itertools.count():
        try:
            return _download_once(url, timeout, max_bytes)
        except DownloadError as error:
            if not error.transient or attempt >= retries:
                raise
            logger.debug("retrying %s after %s", url, error.reason)
            time.sleep(backoff * 2**attempt)


def check_download_bounds(*, timeout, max_bytes, retries=0, backoff=0.0) -> None:
    """Raise `ValueError`, naming the argument and its value, unless the bounds are ones `download` can keep."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise ValueError(f"timeout={timeout!r} is invalid; expected a positive, finite number of seconds")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes={max_bytes!r} is invalid; expected a positive integer")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries={retries!r} is invalid; expected a non-negative integer")
    if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or not 0 <= backoff < math.inf:
        raise ValueError(f"backoff={backoff!r} is invalid; expected a non-negative number of seconds")


def _check_scheme(url) -> None:
    if not isinstance(url, str):
        raise DownloadError(repr(url), "bad_url", f"a URL is a string, not {type(url).__name__}", False)
    try:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
    except ValueError as error:  # e.g. an unclosed IPv6 bracket
        raise DownloadError(url, "bad_url", str(error), False) from error
    if scheme not in HTTP_SCHEMES:
        detail = f"scheme {scheme or 'none'!r}; only http and https URLs are downloaded"
        raise DownloadError(url, "unsupported_scheme", detail, False)


def _download_once(url: str, timeout: float, max_bytes: int) -> bytes:
    watchdog = _Watchdog(timeout)
    # Only the handlers http(s) needs: no file, ftp or data handler, so no URL can reach those even by mistake.
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),  # the environment's http(s)_proxy, as urlopen honours it
        _WatchedHTTPHandler(watchdog),
        _WatchedHTTPSHandler(watchdog),
        urllib.request.HTTPDefaultErrorHandler(),
        _HTTPOnlyRedirectHandler(url),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    with watchdog:
        try:
            with opener.open(url, timeout=timeout) as response:
                return _read_body(url, response, max_bytes, watchdog)
        except DownloadError:
            raise
        except (OSError, http.client.HTTPException, ValueError) as error:  # URLError and HTTPError are OSErrors
            raise _failure(url, error, watchdog) from error


def _read_body(url: str, response, max_bytes: int, watchdog: "_Watchdog") -> bytes:
    length = response.headers.get("Content-Length")
    expected = int(length) if length and length.strip().isdigit() else None
    if expected is not None and expected > max_bytes:
        raise DownloadError(url, "too_large", f"Content-Length {expected} exceeds the {max_bytes}-byte limit", False)
    chunks, size = [], 0
    while chunk := response.read1(_CHUNK):  # read1: what has arrived, so the cap is checked as bytes come in
        size += len(chunk)
        if size > max_bytes:
            raise DownloadError(url, "too_large", f"the body exceeds the {max_bytes}-byte limit", False)
        chunks.append(chunk)
    if watchdog.expired:  # the watchdog ended the body: what came is a prefix
        raise watchdog.timeout_error(url)
    if expected is not None and size < expected:  # the server closed the connection early
        raise DownloadError(url, "truncated", f"{size} of {expected} bytes", True)
    return b"".join(chunks)


def _failure(url: str, error: Exception, watchdog: "_Watchdog") -> DownloadError:
    """The `DownloadError` for an exception raised while connecting or reading."""
    if watchdog.expired:  # whatever the shut-down socket made the reader raise
        return watchdog.timeout_error(url)
    if isinstance(error, urllib.error.HTTPError):
        if 300 <= error.code < 400:  # urllib gave up on the redirects: a loop, too many, or no Location
            return DownloadError(url, "redirect", f"{error.code}: {error.reason}", False)
        return DownloadError(url, f"http_{error.code}", str(error.reason), error.code in TRANSIENT_STATUS)
    if isinstance(error, urllib.error.URLError):  # connecting: refused, unreachable, timed out, or no host
        if isinstance(error.reason, TimeoutError):
            return DownloadError(url, "timeout", f"no connection within {watchdog.seconds} s", True)
        if isinstance(error.reason, str):  # urllib's own complaint about the URL, e.g. "no host given"
            return DownloadError(url, "bad_url", error.reason, False)
        return DownloadError(url, "connection", str(error.reason), True)
    if isinstance(error, TimeoutError):  # one read waited the whole timeout
        return DownloadError(url, "timeout", f"no answer within {watchdog.seconds} s", True)
    if isinstance(error, http.client.RemoteDisconnected):  # before BadStatusLine: it is one
        return DownloadError(url, "connection", "the server closed the connection without a response", True)
    if isinstance(error, http.client.IncompleteRead):
        return DownloadError(url, "truncated", repr(error), True)
    if isinstance(error, ValueError):  # http.client.InvalidURL: control characters, a bad port
        return DownloadError(url, "bad_url", str(error), False)
    if isinstance(error, http.client.HTTPException):  # a garbage status line, endless or too many headers, ...
        return DownloadError(url, "not_http", f"not an HTTP response: {str(error).strip()[:100]!r}", False)
    return DownloadError(url, "connection", repr(error), True)  # resets and other socket errors


class _Watchdog:
    """Ends an attempt at its deadline by shutting down every socket it opened, waking any read blocked on one.

    It keeps shutting them down until the attempt ends, so a socket that finished connecting after the deadline is
    caught too. `socket.socket.shutdown` is called on the base class so that a TLS socket is shut at the TCP level."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="download-watchdog", daemon=True)

    def watch(self, sock: socket.socket) -> socket.socket:
        self._sockets.append(sock)
        return sock

    def timeout_error(self, url: str) -> DownloadError:
        return DownloadError(url, "timeout", f"not complete within the {self.seconds} s deadline", True)

    def _watch(self):
        if self._done.wait(self.seconds):
            return
        self.expired = True
        while True:
            for sock in list(self._sockets):
                try:
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:  # closed already, or shut down by the previous round
                    pass
            if self._done.wait(_WATCHDOG_REPEAT_S):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._done.set()


class _WatchedConnection:
    """Mixin for `HTTPConnection`/`HTTPSConnection` that hands every socket it opens to the watchdog: the TCP socket
    as soon as it exists (a TLS handshake can be trickled too) and, for https, the TLS socket that takes its place.
    (The connection's own `sock` is no help: urllib drops it once the headers are read.)"""

    def __init__(self, host, *, watchdog: _Watchdog, **kwargs):
        super().__init__(host, **kwargs)
        self.watchdog = watchdog
        create_connection = self._create_connection
        self._create_connection = lambda *args, **kw: watchdog.watch(create_connection(*args, **kw))

    def connect(self):
        super().connect()
        self.watchdog.watch(self.sock)


class _WatchedHTTPConnection(_WatchedConnection, http.client.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnection, http.client.HTTPSConnection):
    pass


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watchdog: _Watchdog):
        super().__init__()
        self.watchdog = watchdog

    def http_open(self, request):
        return self.do_open(functools.partial(_WatchedHTTPConnection, watchdog=self.watchdog), request)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watchdog: _Watchdog):
        super().__init__()
        self.watchdog = watchdog

    def https_open(self, request):
        connection_class = functools.partial(_WatchedHTTPSConnection, watchdog=self.watchdog)
        return self.do_open(connection_class, request, context=self._context)


class _HTTPOnlyRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) URLs only. urllib's own handler follows ftp:// too, and refuses file:// with an
    HTTPError that reads like a failed 302; here both are a "unsupported_scheme" error naming the target."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, url: str):
        self.url = url  # the URL the caller asked for, which errors name

    def http_error_302(self, request, fp, code, msg, headers):
        location = headers.get("location") or headers.get("uri")
        if location:
            target = urllib.parse.urljoin(request.full_url, location)
            scheme = urllib.parse.urlsplit(target).scheme.lower()
            if scheme not in HTTP_SCHEMES:
                fp.close()
                detail = f"redirected to {target[:_SHOWN_URL_CHARS]!r}; only http and https redirects are followed"
                raise DownloadError(self.url, "unsupported_scheme", detail, False)
        return super().http_error_302(request, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302
