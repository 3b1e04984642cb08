"""The receiver: verify, replay-check, decrypt and store uplink frames (docs/receiver.md).

``Receiver(store, lookup).submit(frame, source)`` is the whole pipeline for one frame and never
raises because of the frame: any input (not bytes, empty, truncated, oversized, hostile) ends
as a ``Result`` with a reason from ``RECEIVER_REASONS``, counted in the store. It raises only
when the store or the key registry itself fails (``StoreError``, ``RegistryError``), so that a
transport does not acknowledge a frame that was not recorded.

Replay state: the registry's lookup returns a fresh ``KeyEntry`` (key, context IV, revoked);
the receiver replaces its ``replay`` with the window persisted in the store before
``parse_and_open`` checks it (read with the device locked until the commit), and
``Storage.accept`` advances and writes it in the transaction that stores the reading. The
store is the only source of truth: nothing in memory can go stale, a restart resumes exactly,
and several receivers may share one store.

Sources (``open_source``): ``mqtt://[user[:pass]@]host[:port][/topic]`` (``mqtts://`` for TLS)
through paho-mqtt with QoS 1, acknowledging each message only after it is recorded, optional
shared subscriptions (``$share/GROUP/topic``); ``file:PATH``, a plain path or ``-`` (stdin):
captured frames, one hex frame per line, ``#`` comments. Emulated boards call ``submit``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import unquote, urlsplit

from .errors import UserError
from .frame import REASONS, FrameRejected, KeyEntry, Lookup, parse_and_open
from .registry import KeyUnreadable
from .store import Reading, Storage, StoreError

log = logging.getLogger("atsource.receiver")

# The largest frame the receiver looks at. A frame of the largest padding bucket (256 bytes)
# with a 5-byte piv is 295 bytes; anything far larger is refused before parsing.
MAX_FRAME = 1024
# Reasons in the order they are checked; "oversized" comes first (a cheap guard) and
# "internal-error" would mean a receiver bug (the fuzz tests assert it never happens).
# After the frame checks, three the receiver adds (docs/receiver.md):
# - "duplicate": a frame older than the replay window that is an authentic copy of a reading
#   already stored (a resend of a long backlog after a power cut: nothing lost), told apart
#   from "too-old", which is then only a frame that was never stored (a real loss);
# - "kid-reused": the kid's key is not the one the store's readings of that kid were opened
#   with (a registry that issued the device number again);
# - "key-unreadable": the registry's row for this kid does not decrypt (only its device
#   suffers; the others go on).
RECEIVER_REASONS: tuple[str, ...] = (
    "oversized",
    *REASONS,
    "duplicate",
    "kid-reused",
    "key-unreadable",
    "internal-error",
)
# The longest capture line read: a frame of MAX_FRAME bytes as hex with spaces, and a comment.
MAX_LINE = 4 * MAX_FRAME
DEFAULT_TOPIC = "atsource/up/#"
DEFAULT_BATCH = 500


class RegistryError(UserError):
    """The key registry could not be read."""


def key_hash(kid: bytes, entry: KeyEntry) -> bytes:
    """A one-way fingerprint of a kid's key and context IV, kept in the store: a kid issued
    again with another key is then told apart ("kid-reused") from the first one."""
    data = b"atsource kid key v1\0" + kid + entry.key + entry.context_iv
    return hashlib.sha256(data).digest()[:16]


@dataclass(frozen=True)
class Result:
    """What became of one frame: accepted (with its stored reading) or rejected (with a reason
    and, once known, the frame's kid)."""

    reason: str | None
    kid: bytes | None = None
    piv: int | None = None
    reading: Reading | None = None

    @property
    def accepted(self) -> bool:
        return self.reason is None


class Receiver:
    """Verify, decrypt and store frames for the devices ``lookup`` knows.

    ``key_cache_s``: how long a registry answer for a kid is reused (revoking a key takes
    effect after at most this long; 0 asks the registry for every frame).
    """

    def __init__(
        self,
        store: Storage,
        lookup: Lookup,
        *,
        max_frame: int = MAX_FRAME,
        key_cache_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.max_frame = max_frame
        self.counts: Counter[str] = Counter()
        self._registry = lookup
        self._key_cache_s = key_cache_s
        self._keys: dict[bytes, tuple[float, KeyEntry]] = {}
        self._clock = clock
        self._bound: set[bytes] = set()  # kids whose key binding is in the store
        self._warned: set[bytes] = set()  # kids whose registry trouble was logged once

    def _base(self, kid: bytes) -> KeyEntry | None:
        """The registry's entry for kid (cached), checked against the store's key binding."""
        now = time.monotonic()
        hit = self._keys.get(kid)
        if hit is not None and now - hit[0] < self._key_cache_s:
            return hit[1]
        try:
            found = self._registry(kid)
        except KeyUnreadable as e:
            # One damaged registry row: that device's frames are refused, the others go on.
            if kid not in self._warned:
                self._warned.add(kid)
                log.error("%s", e)
            raise FrameRejected("key-unreadable", kid) from None
        except UserError as e:
            raise RegistryError(f"cannot read the key registry: {e}") from None
        except Exception as e:
            raise RegistryError(f"cannot read the key registry: {type(e).__name__}") from e
        if found is None:
            self._keys.pop(kid, None)
            return None
        bound = self.store.key_hash(kid)
        if bound is not None and bound != key_hash(kid, found):
            if kid not in self._warned:
                self._warned.add(kid)
                log.error(
                    "kid %s: the store holds readings of this kid opened with another key: the "
                    "registry issued the device number again (restore the right registry)",
                    kid.hex(),
                )
            raise FrameRejected("kid-reused", kid)
        if self._key_cache_s > 0:
            if len(self._keys) >= 4096:
                self._keys.clear()
            self._keys[kid] = (now, found)
        return found

    def _lookup(self, kid: bytes) -> KeyEntry | None:
        base = self._base(kid)
        if base is None:
            return None
        if base.revoked:
            return KeyEntry(base.key, base.context_iv, True)
        return KeyEntry(base.key, base.context_iv, False, self.store.window(kid))

    def _duplicate(self, frame: bytes, kid: bytes) -> bool:
        """Whether a frame too old for the window is an authentic copy of a stored reading."""
        base = self._base(kid)
        if base is None or base.revoked:
            return False

        def fresh(k: bytes) -> KeyEntry | None:
            return KeyEntry(base.key, base.context_iv) if k == kid else None

        try:
            opened = parse_and_open(frame, fresh)
        except FrameRejected:
            return False
        return self.store.has_reading(kid, opened.piv)

    def submit(self, frame: Any, source: str = "") -> Result:
        """Receive one frame. Raises only StoreError or RegistryError (infrastructure)."""
        # One transaction around the whole frame: the window parse_and_open checks is the one
        # accept() advances (a batch joins its outer transaction).
        try:
            with self.store.transaction():
                return self._submit(frame, source)
        except (StoreError, RegistryError):
            raise
        except Exception as e:  # a receiver bug: count it, keep going, say what (not the data)
            log.error("internal error on a frame: %s", type(e).__name__)
            return self._reject("internal-error", None)

    def _submit(self, frame: Any, source: str) -> Result:
        try:
            if isinstance(frame, bytes | bytearray | memoryview) and len(frame) > self.max_frame:
                raise FrameRejected("oversized")
            # parse_and_open checks the type itself (anything not bytes-like is not-cose).
            opened = parse_and_open(cast(bytes, frame), self._lookup)
            reading = Reading(opened.kid, opened.piv, opened.record, self._clock(), source)
            reading.id = self.store.accept(reading)
            if opened.kid not in self._bound:
                base = self._base(opened.kid)
                if base is not None:
                    self.store.bind_key(opened.kid, key_hash(opened.kid, base))
                    self._bound.add(opened.kid)
        except FrameRejected as e:
            if e.reason == "too-old" and e.kid is not None:
                try:
                    if self._duplicate(cast(bytes, frame), e.kid):
                        return self._reject("duplicate", e.kid)
                except FrameRejected:
                    pass
            return self._reject(e.reason, e.kid)
        self.counts["accepted"] += 1
        return Result(None, opened.kid, opened.piv, reading)

    def _reject(self, reason: str, kid: bytes | None) -> Result:
        self.store.reject(reason, kid)
        self.counts[reason] += 1
        log.debug("rejected %s%s", reason, f" kid {kid.hex()}" if kid else "")
        return Result(reason, kid)

    def submit_many(
        self, frames: Iterable[Any], source: str = "", *, batch: int = DEFAULT_BATCH
    ) -> list[Result]:
        """Receive many frames, committing every ``batch`` frames (one transaction per batch).

        Each frame still stores its reading and advances its window together or not at all;
        a crash loses at most the uncommitted batch, whose frames were not acknowledged and are
        accepted again when resent.
        """
        out: list[Result] = []
        it = iter(frames)
        while chunk := list(islice(it, max(1, batch))):
            with self.store.transaction():
                out.extend(self.submit(f, source) for f in chunk)
        return out


# --- sources -----------------------------------------------------------------------------------

OnResult = Callable[[Result], None]


@dataclass
class RunSummary:
    source: str
    frames: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    bad_lines: int = 0
    ended: str = "end"  # end | count | timeout | stopped

    def add(self, res: Result) -> None:
        self.frames += 1
        if res.accepted:
            self.accepted += 1
        else:
            assert res.reason is not None
            self.rejected[res.reason] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "frames": self.frames,
            "accepted": self.accepted,
            "rejected": dict(sorted(self.rejected.items())),
            "bad_lines": self.bad_lines,
            "ended": self.ended,
        }


def read_capture(stream: IO[str], name: str = "capture") -> Iterator[tuple[int, bytes | None]]:
    """(line number, frame) for each frame line of a capture; frame None for a line that is
    not hex or longer than MAX_LINE characters (logged with its number, never its content).
    A UTF-8 byte order mark before the first line is ignored."""
    n = 0
    while line := stream.readline(MAX_LINE):
        n += 1
        if len(line) >= MAX_LINE and not line.endswith("\n"):
            while (rest := stream.readline(MAX_LINE)) and not rest.endswith("\n"):
                pass  # a line no frame can fill: skip it without holding it in memory
            log.warning("%s:%d: a line longer than %d characters, skipped", name, n, MAX_LINE)
            yield n, None
            continue
        if n == 1:
            line = line.removeprefix("\ufeff")
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            yield n, bytes.fromhex(text)
        except ValueError:
            log.warning("%s:%d: not a hex frame, skipped", name, n)
            yield n, None


def write_capture(stream: IO[str], frames: Iterable[bytes], comment: str = "") -> None:
    """Write frames in the capture format (the inverse of read_capture)."""
    if comment:
        for line in comment.splitlines():
            stream.write(f"# {line}\n")
    for f in frames:
        stream.write(f.hex() + "\n")


class FileSource:
    """Captured frames from a file (or stdin for ``-``), committed in batches."""

    def __init__(self, path: Path | None) -> None:
        self.path = path  # None: stdin
        self._stop = threading.Event()

    @property
    def name(self) -> str:
        return f"file:{self.path}" if self.path else "stdin"

    def stop(self) -> None:
        self._stop.set()

    def run(
        self,
        receiver: Receiver,
        *,
        count: int | None = None,
        timeout: float | None = None,
        on_result: OnResult | None = None,
        batch: int = DEFAULT_BATCH,
    ) -> RunSummary:
        summary = RunSummary(self.name)
        deadline = time.monotonic() + timeout if timeout is not None else None
        label = f"file:{self.path.name}" if self.path else "stdin"
        if self.path is None:
            batch = 1  # a live pipe: commit each frame as it comes
        with ExitStack() as stack:
            try:
                fh = (
                    stack.enter_context(open(self.path, encoding="utf-8", errors="replace"))
                    if self.path
                    else sys.stdin
                )
            except OSError as e:
                raise UserError(f"cannot read {self.path}: {e.strerror}") from None
            lines = read_capture(fh, str(self.path or "stdin"))
            while chunk := list(islice(lines, max(1, batch))):
                with receiver.store.transaction():
                    for _, data in chunk:
                        if data is None:
                            summary.bad_lines += 1
                            continue
                        res = receiver.submit(data, label)
                        summary.add(res)
                        if on_result:
                            on_result(res)
                        if count is not None and summary.accepted >= count:
                            summary.ended = "count"
                            return summary
                if deadline is not None and time.monotonic() >= deadline:
                    summary.ended = "timeout"
                    return summary
                if self._stop.is_set():
                    summary.ended = "stopped"
                    return summary
        return summary


_TOPIC_LEVEL = re.compile(r"^(#|\+|[^#+]*)$")


def _check_topic(topic: str) -> None:
    levels = topic.split("/")
    bad = not topic or "\x00" in topic or any(not _TOPIC_LEVEL.match(lv) for lv in levels)
    if bad or "#" in levels[:-1]:
        raise UserError(f"invalid MQTT topic filter: {topic!r}")


class MqttSource:
    """Frames from an MQTT broker: QoS 1, each message acknowledged only after the receiver has
    stored or rejected it; reconnects with backoff (1 s up to 30 s) after a lost connection."""

    def __init__(
        self,
        host: str,
        port: int,
        topic: str = DEFAULT_TOPIC,
        *,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        share: str | None = None,
        client_id: str | None = None,
        keepalive: int = 30,
        ca: str | None = None,
    ) -> None:
        _check_topic(topic)
        if topic.startswith("$share/"):
            raise UserError("give the share group with --share, not in the topic")
        if share is not None and (not share or any(c in share for c in "/+#")):
            raise UserError(f"invalid share group name: {share!r}")
        self.host, self.port, self.topic = host, port, topic
        self.username, self.password, self.tls = username, password, tls
        self.share, self.client_id, self.keepalive = share, client_id, keepalive
        self.ca = ca  # a CA file for mqtts:// (default: the system's CAs)
        self.ready = threading.Event()  # set once the broker has granted the subscription
        self.on_ready: Callable[[], None] | None = None  # called then, in the MQTT thread
        self._client: Any = None
        self._stopping = False

    @property
    def subscription(self) -> str:
        return f"$share/{self.share}/{self.topic}" if self.share else self.topic

    @property
    def name(self) -> str:  # never the credentials
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.host}:{self.port}/{self.subscription}"

    def stop(self) -> None:
        """Disconnect (from any thread); run() then returns."""
        self._stopping = True
        if self._client is not None:
            self._client.disconnect()

    def run(
        self,
        receiver: Receiver,
        *,
        count: int | None = None,
        timeout: float | None = None,
        on_result: OnResult | None = None,
    ) -> RunSummary:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        summary = RunSummary(self.name)
        errors: list[str] = []
        # A named client keeps its session (and the broker queues QoS 1 frames while it is
        # away); an anonymous one starts clean.
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id or "",
            clean_session=self.client_id is None,
            manual_ack=True,
        )
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set(ca_certs=self.ca)
        client.reconnect_delay_set(min_delay=1, max_delay=30)

        def on_connect(c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            if rc.is_failure:
                errors.append(f"the broker refused the connection: {rc}")
                c.disconnect()
                return
            c.subscribe(self.subscription, qos=1)

        def on_subscribe(c: Any, _u: Any, _mid: Any, rcs: Any, _p: Any) -> None:
            if any(r.is_failure for r in rcs):
                errors.append(f"the broker refused the subscription to {self.subscription}")
                c.disconnect()
            else:
                self.ready.set()
                if self.on_ready:
                    self.on_ready()

        def on_message(c: Any, _u: Any, msg: Any) -> None:
            # An exception here (store or registry down) leaves the message unacknowledged and
            # stops the loop: the broker will deliver it again.
            res = receiver.submit(msg.payload, f"mqtt:{msg.topic}")
            c.ack(msg.mid, msg.qos)
            summary.add(res)
            if on_result:
                on_result(res)
            if count is not None and summary.accepted >= count and summary.ended == "end":
                summary.ended = "count"
                c.disconnect()

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        try:
            client.connect(self.host, self.port, self.keepalive)
        except (OSError, ValueError) as e:
            reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
            raise UserError(
                f"cannot reach the MQTT broker at {self.host}:{self.port}: {reason}"
            ) from None
        self._client = client
        if self._stopping:
            client.disconnect()

        def on_timeout() -> None:
            if summary.ended == "end":
                summary.ended = "timeout"
            client.disconnect()

        timer = threading.Timer(timeout, on_timeout) if timeout is not None else None
        if timer:
            timer.daemon = True
            timer.start()
        try:
            client.loop_forever()
        except BaseException:
            # Leave without acknowledging the message being handled: close the socket so that
            # the broker sees the session end (and redelivers it to a persistent session).
            sock = client.socket()
            if sock is not None:
                sock.close()
            raise
        finally:
            if timer:
                timer.cancel()
            self._client = None
        if errors:
            raise UserError(errors[0])
        if self._stopping and summary.ended == "end":
            summary.ended = "stopped"
        return summary


class HttpSource:
    """Frames POSTed by devices' HTTP transport (``sensor/httppost.py``): a small HTTP server on
    ``host:port`` that takes ``POST path`` with the frame as the body. Like an MQTT message, a
    POST is answered only once the receiver has stored or rejected the frame (204 stored, 202
    rejected with a reason the stats count): either way the device may forget it, as a device
    retrying a frame the receiver will never accept would block its outbox. A store that fails
    answers 503, so the device keeps the frame and sends it again."""

    def __init__(self, host: str, port: int, path: str = "/") -> None:
        self.host, self.port, self.path = host, port, path or "/"
        self.ready = threading.Event()
        self._server: Any = None
        self._stopping = False

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            threading.Thread(target=self._server.shutdown, daemon=True).start()

    def run(
        self,
        receiver: Receiver,
        *,
        count: int | None = None,
        timeout: float | None = None,
        on_result: OnResult | None = None,
    ) -> RunSummary:
        import http.server

        summary = RunSummary(self.name)
        lock = threading.Lock()
        src = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                if self.path != src.path:
                    self._answer(404)
                    return
                try:
                    n = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    self._answer(411)
                    return
                if not 0 < n <= receiver.max_frame:
                    self._answer(413)
                    return
                body = self.rfile.read(n)
                try:
                    with lock:
                        res = receiver.submit(body, f"http:{self.client_address[0]}")
                        summary.add(res)
                except Exception:  # noqa: BLE001 - the device keeps the frame and retries
                    self._answer(503)
                    return
                self._answer(204 if res.accepted else 202)
                if on_result:
                    with lock:
                        on_result(res)
                if count is not None and summary.accepted >= count and summary.ended == "end":
                    summary.ended = "count"
                    src.stop()

            def do_GET(self) -> None:  # noqa: N802
                self._answer(405)

            def _answer(self, code: int) -> None:
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass  # never log a device's address or request line

        try:
            server = http.server.ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError as e:
            raise UserError(f"cannot listen on {self.host}:{self.port}: {e.strerror}") from None
        self._server = server
        self.ready.set()
        timer = None
        if timeout is not None:

            def on_timeout() -> None:
                if summary.ended == "end":
                    summary.ended = "timeout"
                src.stop()

            timer = threading.Timer(timeout, on_timeout)
            timer.daemon = True
            timer.start()
        try:
            if not self._stopping:
                server.serve_forever(poll_interval=0.2)
        finally:
            if timer:
                timer.cancel()
            server.server_close()
            self._server = None
        if self._stopping and summary.ended == "end":
            summary.ended = "stopped"
        return summary


Source = FileSource | MqttSource | HttpSource


def open_source(
    spec: str, *, share: str | None = None, client_id: str | None = None, ca: str | None = None
) -> Source:
    """Parse a --from value: an MQTT URL, file:PATH, a plain path, or - (stdin)."""
    m = re.match(r"^(mqtts?)://([^/]*)(?:/(.*))?$", spec)
    if m:
        scheme, netloc, topic = m[1], m[2], m[3] or DEFAULT_TOPIC
        userinfo, _, hostport = netloc.rpartition("@")
        user = pw = None
        if userinfo:
            u, sep, p = userinfo.partition(":")
            user = unquote(u)
            pw = unquote(p) if sep else os.environ.get("ATSOURCE_MQTT_PASSWORD")
        try:
            parts = urlsplit("//" + hostport)
            host, port = parts.hostname, parts.port
        except ValueError:
            raise UserError(f"invalid port in {scheme}:// source") from None
        if not host:
            raise UserError(f"no broker host in {scheme}:// source")
        port = port or (8883 if scheme == "mqtts" else 1883)
        return MqttSource(
            host,
            port,
            topic,
            username=user,
            password=pw,
            tls=scheme == "mqtts",
            share=share,
            client_id=client_id,
            ca=ca,
        )
    h = re.match(r"^http://([^/]*)(/.*)?$", spec)
    if h and share is None and client_id is None:
        try:
            parts = urlsplit("//" + h[1])
            hhost, hport = parts.hostname, parts.port
        except ValueError:
            raise UserError("invalid port in http:// source") from None
        if not hhost or hport is None:
            raise UserError("give the address to listen on: http://HOST:PORT/PATH")
        return HttpSource(hhost, hport, h[2] or "/")
    if share is not None or client_id is not None:
        raise UserError("--share and --client-id apply to mqtt:// sources only")
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", spec):
        raise UserError(
            f"unsupported source {spec.split('://')[0]}://: use mqtt://, mqtts://, http://, file:"
        )
    path = spec[5:] if spec.startswith("file:") else spec
    if path == "-":
        return FileSource(None)
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"no capture file {p}")
    return FileSource(p)
