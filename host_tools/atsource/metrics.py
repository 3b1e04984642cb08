"""Prometheus metrics of a running receiver (`atsource receive --metrics-port`).

Served in the Prometheus text format by ``prometheus_client`` from its own registry (nothing
global). Series:

- ``atsource_frames_accepted_total{device}``: frames verified and stored, per device.
- ``atsource_frames_rejected_total{reason, device}``: frames refused, per reason; ``device`` is
  empty when the frame named no kid the registry knows (so hostile input cannot add series).
- ``atsource_frame_lag_seconds{device}``: for the device's last stored frame, the time from
  the end of its window to its storage (a device flushing its backlog shows a large lag).
- ``atsource_last_accepted_timestamp_seconds{device}``: Unix time of that frame's storage.

``device`` is the device name (``dev-000007``) from the frame's kid, which is public: it
travels in every frame. Nothing else about a frame is exported.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from .receiver import Result
from .store import NOT_A_DEVICE


def device_label(kid: bytes) -> str:
    return f"dev-{int.from_bytes(kid[:4], 'big'):06d}"


class ReceiverMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter(
            "atsource_frames_accepted",
            "Frames verified and stored.",
            ["device"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "atsource_frames_rejected",
            "Frames refused, by reason.",
            ["reason", "device"],
            registry=self.registry,
        )
        self.lag = Gauge(
            "atsource_frame_lag_seconds",
            "Seconds from the end of the last stored frame's window to its storage.",
            ["device"],
            registry=self.registry,
        )
        self.last = Gauge(
            "atsource_last_accepted_timestamp_seconds",
            "Unix time the device's last frame was stored.",
            ["device"],
            registry=self.registry,
        )
        self._server: Any = None

    def observe(self, res: Result) -> None:
        if res.accepted:
            assert res.kid is not None and res.reading is not None
            dev = device_label(res.kid)
            self.accepted.labels(dev).inc()
            rec = res.reading.record
            start, length = rec.get(0), rec.get(1)
            if type(start) is int and type(length) is int:
                self.lag.labels(dev).set(res.reading.received - (start + length))
            self.last.labels(dev).set(res.reading.received)
            return
        reason = str(res.reason)
        dev = device_label(res.kid) if res.kid and reason not in NOT_A_DEVICE else ""
        self.rejected.labels(reason, dev).inc()

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve /metrics on addr:port (0: a free port); returns the port."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        self._server = server
        return int(server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
