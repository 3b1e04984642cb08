"""ScenarioWorld: the street around one emulated board, generated from a scenario and a seed.

The world is open-loop (see ``world_api``): everything that happens is drawn up front from
``random.Random`` instances seeded by the scenario's seed, so the same seed gives the same day.
What can be precomputed is: the population (arrival, departure, doorway crossings, PIR motion,
phone), the pin edges and the fault events, held in one time-sorted list that ``events_until``
walks with a cursor. BLE adverts cannot be listed up front (a busy day has millions of them and
only those inside the firmware's scans matter), so they are produced lazily per scan by an
event-driven sweep over the phones present; every per-advert random choice (timing jitter, duty
cycle, RSSI jitter) is a hash of (phone, advert number), so the output never depends on how the
engine slices time. See docs/scenarios.md for the models and their simplifications.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from .scenario import DAY_US, US, People, Scenario, mix64
from .world_api import Event

BME280_ADDRESS = 0x76
RSSI_FLOOR_DBM = -90  # ground truth counts phones at or above this (a typical firmware floor)
ADV_IND = 0
FLAGS_AD = b"\x02\x01\x06"  # LE General Discoverable, BR/EDR not supported
AD_COMPLETE_NAME = 0x09

# Doorway geometry: two beams 10 cm apart; a body 0.35-0.5 m deep walking 1.0-1.4 m/s darkens
# each beam for 0.25-0.5 s and reaches the second beam ~80 ms after the first.
BEAM_SPACING_M = 0.10
SPEED_M_S = (1.0, 1.4)
BODY_DEPTH_M = (0.35, 0.50)
GROUP_GAP_S = (0.1, 0.5)  # a group member follows the previous one this closely
STOP_S = (2.0, 6.0)  # how long someone who stops in the doorway stands there
PIR_HOLD_US = 2 * US  # a PIR output stays high this long after the last motion (retriggerable)
PASSERBY_S = (15.0, 60.0)  # time a passer-by's phone is in radio range
ADV_INTERVAL_SPREAD = 0.10  # each phone's interval is adv_interval_s within +/-10%
RSSI_JITTER_DB = 2  # per-advert RSSI is the phone's own RSSI +/- this
GT_SAMPLE_US = 10 * US  # ground-truth weather means sample every 10 s

_MODELS = ("Pixel-7", "Galaxy S21", "iPhone", "Redmi Note 12", "moto g54", "OnePlus 11")
_FIRST_NAMES = ("Mara", "Jonas", "Aisha", "Luca", "Noor", "Pedro", "Mei", "Oskar", "Ines")
_OPT_OUT_SUFFIXES = ("_nomap", "_nomap", "_nomap", "_optout")
_INF = 1 << 62
_MASK64 = (1 << 64) - 1


# --- population --------------------------------------------------------------------------------


@dataclass(slots=True)
class Crossing:
    """One walk through the doorway; beam intervals are [dark from, dark until) in us."""

    inward: bool
    a: tuple[int, int]
    b: tuple[int, int]

    @property
    def start_us(self) -> int:
        return min(self.a[0], self.b[0])

    @property
    def end_us(self) -> int:
        """When the crossing completes: the last beam is clear again."""
        return max(self.a[1], self.b[1])


@dataclass(slots=True)
class Phone:
    """A phone in radio range from ``arrival_us`` to ``departure_us``.

    ``epochs`` are (from, until, address, addr_type) with addr_type 0 public, 1 random;
    addresses are 6 bytes in the order MicroPython's scan IRQ delivers them (least significant
    byte first, as on HCI), so a resolvable private address has 0b01 in the top bits of byte 5.
    Advert k goes out at ``first_adv_us + k * interval_us`` plus a hashed jitter.
    """

    ident: int
    arrival_us: int
    departure_us: int
    epochs: tuple[tuple[int, int, bytes, int], ...]
    rssi: int
    name: str | None
    opted_out: bool
    adv_data: bytes
    first_adv_us: int
    interval_us: int
    jitter_us: int
    key: int
    epoch_starts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.epoch_starts = tuple(e[0] for e in self.epochs)

    def address_at(self, t_us: int) -> tuple[bytes, int]:
        e = self.epochs[max(0, bisect.bisect_right(self.epoch_starts, t_us) - 1)]
        return e[2], e[3]

    def advert(self, k: int) -> tuple[int, int]:
        """(time, hash) of advert number ``k``; the hash drives its random choices."""
        h = mix64(self.key + k)
        return self.first_adv_us + k * self.interval_us + ((h & 0xFFFFF) * self.jitter_us >> 20), h

    def first_advert_after(self, t_us: int) -> tuple[int, int, int]:
        """(k, time, hash) of the first advert strictly after ``t_us`` (may be after leaving)."""
        k = max(0, (t_us - self.first_adv_us) // self.interval_us)
        t, h = self.advert(k)
        while t <= t_us:  # jitter < interval, so this runs at most twice
            k += 1
            t, h = self.advert(k)
        return k, t, h

    def advertises_in(self, lo_us: int, hi_us: int) -> bool:
        """Whether an advert goes out in [lo, hi) while the phone is present."""
        _, t, _ = self.first_advert_after(lo_us - 1)
        return t < hi_us and t < self.departure_us


@dataclass(slots=True)
class Person:
    """Someone who comes to the place (or, if ``passerby``, only walks past in radio range)."""

    ident: int
    arrival_us: int
    departure_us: int
    passerby: bool
    door: bool
    follower: bool  # walks close behind the previous arrival
    crossings: tuple[Crossing, ...]
    motion_us: tuple[int, ...]  # PIR triggers
    phone: Phone | None


def _crossing(t0: int, inward: bool, speed: float, depth: float, pause_us: int) -> Crossing:
    dark = round(depth / speed * US)
    lag = round(BEAM_SPACING_M / speed * US)
    # Someone who stops does so mid-doorway with both beams dark, so both stay dark longer.
    first = (t0, t0 + dark + pause_us)
    second = (t0 + lag, t0 + lag + dark + pause_us)
    return Crossing(inward, first, second) if inward else Crossing(inward, second, first)


def _hourly_poisson(
    rng: random.Random, rates: tuple[float, ...], scale: float, lo_us: int, hi_us: int
) -> list[int]:
    """Arrival times of a Poisson process whose rate (per hour) is constant within each hour."""
    out: list[int] = []
    hour_us = 3600 * US
    h0 = lo_us - lo_us % hour_us
    while h0 < hi_us:
        rate = rates[(h0 % DAY_US) // hour_us] * scale / hour_us
        if rate > 0:
            # The process is memoryless, so restarting it at each hour boundary is exact.
            t = max(h0, lo_us) + rng.expovariate(rate)
            end = min(h0 + hour_us, hi_us)
            while t < end:
                out.append(int(t))
                t += rng.expovariate(rate)
        h0 += hour_us
    return out


class _PhoneFactory:
    """Draws phones: address epochs, RSSI, name, advertising schedule."""

    def __init__(self, people: People, seed: int) -> None:
        self.p = people
        self.rng = random.Random(f"{seed}/phones")
        self.used: set[bytes] = set()
        self.count = 0

    def _address(self, public: bool) -> bytes:
        while True:
            raw = bytearray(self.rng.getrandbits(48).to_bytes(6, "little"))
            # Byte 5 is the most significant: public -> unicast, globally administered OUI;
            # random -> resolvable private address (top bits 0b01).
            raw[5] = raw[5] & 0xFC if public else (raw[5] & 0x3F) | 0x40
            addr = bytes(raw)
            if addr not in self.used:  # unique, so ground truth can count (phone, epoch) pairs
                self.used.add(addr)
                return addr

    def _name(self, opted_out: bool) -> str | None:
        rng = self.rng
        model = rng.choice(_MODELS)
        if opted_out:
            return f"{model}-{rng.getrandbits(16):04X}{rng.choice(_OPT_OUT_SUFFIXES)}"
        if rng.random() >= self.p.named_share:
            return None
        if rng.random() < 0.5:
            return f"{rng.choice(_FIRST_NAMES)}'s {model}"
        return f"{model} {rng.getrandbits(16):04X}"

    def make(self, arrival: int, departure: int, passerby: bool) -> Phone:
        p, rng = self.p, self.rng
        ident = self.count
        self.count += 1
        opted_out = rng.random() < p.opt_out_share
        public = rng.random() < p.public_address_share
        near = (p.rssi_near + p.rssi_far) / 2 if passerby else p.rssi_near  # passers-by are far
        rssi = round(rng.uniform(p.rssi_far, near))
        if public:
            epochs = [(arrival, departure, self._address(True), 0)]
        else:
            rot = round(p.rotation_minutes * 60 * US)
            epochs = []
            t = arrival
            nxt = arrival + rng.randrange(1, rot + 1)  # random phase of the phone's rotation
            while t < departure:
                epochs.append((t, min(nxt, departure), self._address(False), 1))
                t, nxt = nxt, nxt + rot
        name = self._name(opted_out)
        adv_data = FLAGS_AD
        if name is not None:
            raw = name.encode()
            adv_data += bytes((len(raw) + 1, AD_COMPLETE_NAME)) + raw
        spread = rng.uniform(1 - ADV_INTERVAL_SPREAD, 1 + ADV_INTERVAL_SPREAD)
        interval = round(p.adv_interval_s * US * spread)
        return Phone(
            ident=ident,
            arrival_us=arrival,
            departure_us=departure,
            epochs=tuple(epochs),
            rssi=rssi,
            name=name,
            opted_out=opted_out,
            adv_data=adv_data,
            first_adv_us=arrival + rng.randrange(interval),
            interval_us=interval,
            jitter_us=round(p.adv_jitter_s * US),
            key=mix64(rng.getrandbits(64)),
        )


def generate_population(scenario: Scenario, seed: int) -> list[Person]:
    """Everyone who is present at some time in the scenario, sorted by arrival.

    Arrivals start before the scenario (by the longest dwell, at most a day) so the place is
    already populated at the start; crossings and PIR motion before the start are dropped.
    Separate generators for times, behaviour and phones keep e.g. the arrival times unchanged
    when only phone_share is edited.
    """
    p = scenario.people
    start, end = scenario.start_us, scenario.end_us
    warmup = min(DAY_US, round(p.dwell_max_min * 60 * US))
    times = random.Random(f"{seed}/arrivals")
    rng = random.Random(f"{seed}/behaviour")
    phones = _PhoneFactory(p, seed)
    people: list[Person] = []

    # Leaders arrive as a Poisson process at (1 - g) of the rate; each is followed by a chain
    # of followers, each with probability g, so that a share g of all arrivals are followers.
    g = p.group_share
    log_median = math.log(p.dwell_median_min)
    for lead_t in _hourly_poisson(times, p.hourly_rate, 1.0 - g, start - warmup, end):
        prev: Person | None = None
        while True:
            if prev is None:
                minutes = rng.lognormvariate(log_median, p.dwell_sigma)
                minutes = min(p.dwell_max_min, max(p.dwell_min_min, minutes))
                arrival, dwell = lead_t, round(minutes * 60 * US)
                door = rng.random() < p.door_share
            else:  # a follower: same way, same stay, a step behind
                arrival = prev.arrival_us + round(rng.uniform(*GROUP_GAP_S) * US)
                dwell, door = prev.departure_us - prev.arrival_us, prev.door
            follower = prev is not None
            prev = _resident(rng, phones, p, len(people), arrival, dwell, door, follower, start)
            if prev.departure_us > start and prev.arrival_us < end:
                people.append(prev)
            if rng.random() >= g:
                break

    for t in _hourly_poisson(times, p.passersby_rate, 1.0, start - 60 * US, end):
        departure = t + round(rng.uniform(*PASSERBY_S) * US)
        if departure <= start:
            continue
        phone = phones.make(t, departure, True) if rng.random() < p.phone_share else None
        people.append(Person(len(people), t, departure, True, False, False, (), (), phone))

    people.sort(key=lambda x: (x.arrival_us, x.ident))
    return people


def _resident(
    rng: random.Random,
    phones: _PhoneFactory,
    p: People,
    ident: int,
    arrival: int,
    dwell: int,
    door: bool,
    follower: bool,
    start: int,
) -> Person:
    speed = rng.uniform(*SPEED_M_S)
    depth = rng.uniform(*BODY_DEPTH_M)
    pause_in = pause_out = 0
    if rng.random() < p.stop_in_beam_share:
        pause = round(rng.uniform(*STOP_S) * US)
        if rng.random() < 0.5:
            pause_in = pause
        else:
            pause_out = pause
    departure = arrival + dwell
    crossings: tuple[Crossing, ...] = ()
    if door:
        cin = _crossing(arrival, True, speed, depth, pause_in)
        out_len = _crossing(0, False, speed, depth, pause_out).end_us
        # The person is present from breaking the first beam going in until the last beam
        # clears going out; a tiny dwell still leaves the two crossings apart.
        departure = max(departure, cin.end_us + out_len + US)
        cout = _crossing(departure - out_len, False, speed, depth, pause_out)
        crossings = tuple(c for c in (cin, cout) if c.start_us >= start)
    # PIR: arriving and leaving are motion, and so is the occasional shuffle while dwelling.
    motion = [arrival, departure]
    if p.motion_per_hour > 0:
        rate = p.motion_per_hour / (3600 * US)
        t = arrival + rng.expovariate(rate)
        while t < departure:
            motion.append(int(t))
            t += rng.expovariate(rate)
    motion_us = tuple(sorted(m for m in motion if m >= start))
    phone = phones.make(arrival, departure, False) if rng.random() < p.phone_share else None
    return Person(ident, arrival, departure, False, door, follower, crossings, motion_us, phone)


# --- pins and faults ---------------------------------------------------------------------------


def merge_intervals(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The union of [on, off) intervals as sorted disjoint intervals (touching ones merge)."""
    merged: list[tuple[int, int]] = []
    for on, off in sorted(intervals):
        if merged and on <= merged[-1][1]:
            if off > merged[-1][1]:
                merged[-1] = (merged[-1][0], off)
        else:
            merged.append((on, off))
    return merged


class _PinTrack:
    """A pin's level over time: sorted edge times and the level from each edge on."""

    def __init__(self, idle: int, active_intervals: list[tuple[int, int]]) -> None:
        self.idle = idle
        self.times: list[int] = []
        self.levels: list[int] = []
        for on, off in merge_intervals(active_intervals):
            self.times += (on, off)
            self.levels += (1 - idle, idle)

    def level(self, t_us: int) -> int:
        i = bisect.bisect_right(self.times, t_us)
        return self.levels[i - 1] if i else self.idle


def _overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


# --- BLE ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Scan:
    ident: int
    start_us: int
    end_us: int  # exclusive
    duty: float


class _Airwaves:
    """Adverts inside the firmware's scans, generated lazily and in time order.

    A sweep keeps the set of phones present (arrival cursor, departure heap). While a scan is
    being generated, a heap holds each present phone's next advert; the heap survives between
    ``adverts`` calls as long as the same scan continues, so a long scan sliced into thousands
    of short calls costs one heap operation per advert, not one pass over the phones per call.
    """

    def __init__(self, phones: list[Phone], end_us: int, cuts: list[int]) -> None:
        self.phones = sorted(phones, key=lambda ph: (ph.arrival_us, ph.ident))
        self.arrivals = [ph.arrival_us for ph in self.phones]
        self.end_us = end_us
        self.cuts = cuts  # power-cut starts: a scan dies with the board
        self.scans: list[_Scan] = []
        self._scan_ids = 0
        self._next = 0
        self._present: set[int] = set()
        self._leaving: list[tuple[int, int]] = []
        self._heap: list[tuple[int, int, int, int]] = []  # (time, phone index, k, hash)
        self._live: tuple[int, int] | None = None  # (scan id, position) the heap is valid for
        self.reported: set[bytes] = set()
        self.reported_names: set[str] = set()

    def start(self, t_us: int, duration_us: int, interval_us: int, window_us: int) -> None:
        self.stop(t_us)  # a new scan replaces a running one
        end = t_us + duration_us if duration_us > 0 else _INF
        i = bisect.bisect_left(self.cuts, t_us)
        if i < len(self.cuts):
            end = min(end, self.cuts[i])
        duty = 1.0 if interval_us <= 0 else min(1.0, max(0.0, window_us / interval_us))
        self._scan_ids += 1
        self.scans.append(_Scan(self._scan_ids, t_us, min(end, self.end_us + 1), duty))

    def stop(self, t_us: int) -> None:
        if self.scans and self.scans[-1].end_us > t_us:
            self.scans[-1].end_us = max(self.scans[-1].start_us, t_us)

    def _admit(self, i: int) -> None:
        self._present.add(i)
        heapq.heappush(self._leaving, (self.phones[i].departure_us, i))

    def _sweep(self, t_us: int) -> None:
        """Bring the set of present phones to time ``t_us`` (arrived <= t < departed)."""
        arrivals, n = self.arrivals, len(self.arrivals)
        while self._next < n and arrivals[self._next] <= t_us:
            self._admit(self._next)
            self._next += 1
        while self._leaving and self._leaving[0][0] <= t_us:
            self._present.discard(heapq.heappop(self._leaving)[1])

    def adverts(self, lo_us: int, hi_us: int) -> list[Event]:
        """Adverts received in (lo, hi]."""
        out: list[Event] = []
        self.scans = [s for s in self.scans if s.end_us - 1 > lo_us]
        for scan in self.scans:
            x = max(lo_us, scan.start_us - 1)  # exclusive lower bound
            y = min(hi_us, scan.end_us - 1)  # inclusive upper bound
            if y <= x:
                continue
            if self._live != (scan.ident, x):
                self._rebuild(x)
            self._run(y, scan.duty, out)
            self._live = (scan.ident, y)
        return out

    def _rebuild(self, x: int) -> None:
        self._sweep(x)
        heap = []
        for i in self._present:
            ph = self.phones[i]
            k, t, h = ph.first_advert_after(x)
            if t < ph.departure_us:
                heap.append((t, i, k, h))
        heapq.heapify(heap)
        self._heap = heap

    def _run(self, y: int, duty: float, out: list[Event]) -> None:
        # The hot loop of a crowded day (one pass per advert sent, caught or not): advert()
        # and mix64() are inlined, and a caught or missed advert's successor replaces it in
        # the heap in one sift (the heap holds one entry per phone, so the order adverts come
        # out in is the same).
        heap, phones, arrivals, n = self._heap, self.phones, self.arrivals, len(self.arrivals)
        accept = int(duty * (1 << 20))
        span = 2 * RSSI_JITTER_DB + 1
        reported, names = self.reported, self.reported_names
        heappop, heapreplace, m64 = heapq.heappop, heapq.heapreplace, _MASK64
        nxt = self._next
        ta = arrivals[nxt] if nxt < n else _INF
        while True:
            th = heap[0][0] if heap else _INF
            if ta <= th:
                if ta > y:
                    break
                self._admit(nxt)
                t, h = phones[nxt].advert(0)
                heapq.heappush(heap, (t, nxt, 0, h))
                nxt += 1
                ta = arrivals[nxt] if nxt < n else _INF
                continue
            if th > y:
                break
            t, i, k, h = heap[0]
            ph = phones[i]
            if t >= ph.departure_us:
                heappop(heap)
                continue
            if (h >> 20) & 0xFFFFF < accept:  # the scanner's duty cycle caught this advert
                addr, addr_type = ph.address_at(t)
                out.append(("adv", t, addr_type, addr, ADV_IND,
                            ph.rssi + (h >> 40) % span - RSSI_JITTER_DB, ph.adv_data))  # fmt: skip
                reported.add(addr)
                if ph.name is not None:
                    names.add(ph.name)
            k += 1
            x = (ph.key + k + 0x9E3779B97F4A7C15) & m64  # mix64(ph.key + k), as advert(k)
            x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m64
            x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m64
            h = x ^ (x >> 31)
            t = ph.first_adv_us + k * ph.interval_us + ((h & 0xFFFFF) * ph.jitter_us >> 20)
            heapreplace(heap, (t, i, k, h))
        self._next = nxt


# --- the sensor on the bus ---------------------------------------------------------------------


class FaultableDevice:
    """An I2C device as the bus sees it: absent while a ``sensor_disconnect`` fault lasts.

    Each transaction first sets the wrapped model's ``present`` from the fault schedule at the
    transaction's time (a model that is plugged back in resets itself), then delegates; the
    model raises the NACK OSError when absent. ``present`` has no time argument, so it answers
    for the latest time the world has been told (``now_us``: any transaction, ``events_until``
    bound, ``pin_level`` or scan call); ``present_at`` answers exactly.
    """

    def __init__(self, model: Any, absent: list[tuple[int, int]], now_us: int) -> None:
        self.model = model
        self.address: int = model.address
        self._absent = absent
        self._starts = [a for a, _ in absent]
        self.now_us = now_us

    def present_at(self, t_us: int) -> bool:
        i = bisect.bisect_right(self._starts, t_us) - 1
        return not (i >= 0 and t_us < self._absent[i][1])

    @property
    def present(self) -> bool:
        return self.present_at(self.now_us)

    def _sync(self, t_us: int) -> None:
        self.now_us = max(self.now_us, t_us)
        present = self.present_at(t_us)
        if self.model.present != present:
            self.model.present = present

    def write(self, data: bytes, t_us: int) -> None:
        self._sync(t_us)
        self.model.write(data, t_us)

    def read(self, n: int, t_us: int) -> bytes:
        self._sync(t_us)
        return self.model.read(n, t_us)

    def snapshot(self, t_us: int) -> dict[str, Any] | None:
        """The model's snapshot (``Bme280Model.snapshot``), valid until the part next leaves
        the bus (``until_us``); None while it is away or when the model gives none."""
        snap = getattr(self.model, "snapshot", None)
        if snap is None or not self.present_at(t_us):
            return None
        s: dict[str, Any] | None = snap()
        if s is not None:
            i = bisect.bisect_right(self._starts, t_us)
            if i < len(self._starts):
                s["until_us"] = self._starts[i]
        return s


def _bme280_factory(address: int) -> Any:
    from .bme280_model import Bme280Model  # imported lazily: the model is a separate module

    return Bme280Model(address=address)


# --- the world ---------------------------------------------------------------------------------


class ScenarioWorld:
    """The ``World`` of ``world_api`` for one board, from a scenario and a seed.

    ``sensor_factory(address)`` builds the I2C sensor model (default: ``Bme280Model``); its
    ``environment`` is bound to the scenario's weather.
    """

    def __init__(
        self,
        scenario: Scenario,
        board: dict[str, Any],
        seed: int | None = None,
        sensor_factory: Callable[[int], Any] | None = None,
    ) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.start_us = scenario.start_us
        self.end_us = scenario.end_us
        pins = board["pins"]
        self.i2c_bus: int = pins["i2c"]["id"]
        self.environment = scenario.weather.environment(self.seed)
        self._sensor_factory = sensor_factory or _bme280_factory
        self._sensor: FaultableDevice | None = None

        self.people = generate_population(scenario, self.seed)
        self.phones = [p.phone for p in self.people if p.phone is not None]
        self._faults: dict[str, list[tuple[int, int]]] = {}
        for f in scenario.faults:
            self._faults.setdefault(f.kind, []).append((f.start_us, f.end_us))

        self.pins: dict[Any, _PinTrack] = {}
        a_dark, b_dark, pir = [], [], []
        for person in self.people:
            for c in person.crossings:
                a_dark.append(c.a)
                b_dark.append(c.b)
            pir += [(m, m + PIR_HOLD_US) for m in person.motion_us]
        for name, idle, active in (("beam_a", 1, a_dark), ("beam_b", 1, b_dark), ("pir", 0, pir)):
            if pins.get(name) is not None:
                self.pins[pins[name]] = _PinTrack(idle, active)
        self._static = self._static_events()
        self._static_times = [e[1] for e in self._static]
        self._turns = [e[1] for e in self._static if e[0] in ("net", "power")]
        self._cursor = 0
        self._bound = self.start_us - 1  # events at start_us are delivered by the first call
        cuts = [a for a, _ in self._faults.get("power_cut", [])]
        self._air = _Airwaves(self.phones, self.end_us, cuts)
        # The microphone and the particulate sensor (mic_model.py, pms5003_model.py), on the
        # I2S bus and UART the board definition names; built on first use.
        self._mic_bus = pins.get("mic", {}).get("id")
        self._pm_uart = pins.get("pm", {}).get("id")
        self._mic: Any = None
        self._pms: Any = None
        self._truth: dict[int, list[dict[str, Any]]] = {}

    def _static_events(self) -> list[Event]:
        """Pin edges and fault events within the scenario, sorted by time (stable)."""
        events: list[Event] = []
        for pin, track in self.pins.items():
            events += [("pin", t, pin, lv) for t, lv in zip(track.times, track.levels, strict=True)]
        for start, end in self._faults.get("power_cut", []):
            events.append(("power", start, end - start))
        for start, end in self._faults.get("network_outage", []):
            events += [("net", start, False), ("net", end, True)]
        events = [e for e in events if self.start_us <= e[1] <= self.end_us]
        events.sort(key=lambda e: e[1])
        return events

    def _saw(self, t_us: int) -> None:
        """A call carried the engine's time: it is the best guess of "now" for ``present``."""
        if self._sensor is not None and t_us > self._sensor.now_us:
            self._sensor.now_us = t_us

    # -- World protocol --------------------------------------------------------------------------

    def events_until(self, t_us: int) -> list[Event]:
        lo, hi = self._bound, min(t_us, self.end_us)
        if hi <= lo:
            return []
        self._bound = hi
        self._saw(hi)
        j = bisect.bisect_right(self._static_times, hi, lo=self._cursor)
        static = self._static[self._cursor : j]
        self._cursor = j
        adverts = self._air.adverts(lo, hi)
        if not adverts:
            return static
        if not static:
            return adverts
        # Two sorted runs, merged by a stable sort in C (ties: the static event first).
        return sorted(static + adverts, key=itemgetter(1))

    def next_turn_after(self, t_us: int) -> int | None:
        """When the next outage or power cut begins or ends after t_us (None: no more). The
        engine deals the world ahead of the firmware only up to there."""
        i = bisect.bisect_right(self._turns, t_us)
        return int(self._turns[i]) if i < len(self._turns) else None

    def adverts_between(self, lo_us: int, hi_us: int) -> list[Event]:
        """Adverts in (lo, hi] of a scan started at lo, when events up to hi were already
        dealt (lookahead): the scan's own, nothing else."""
        return self._air.adverts(lo_us, min(hi_us, self.end_us))

    def i2c_device(self, bus: int, address: int) -> FaultableDevice | None:
        if bus != self.i2c_bus or address != BME280_ADDRESS:
            return None
        if self._sensor is None:
            model = self._sensor_factory(address)
            model.environment = self.environment
            absent = self._faults.get("sensor_disconnect", [])
            self._sensor = FaultableDevice(model, absent, max(self.start_us, self._bound))
        return self._sensor

    def sound_profile(self) -> Any:
        from .mic_model import LevelProfile

        if self._mic is not None:
            return self._mic.profile
        snd, seed = self.scenario.sound, self.seed
        key = mix64(seed) ^ 5
        rates = snd.events_per_hour
        events = LevelProfile.draw_events(
            seed,
            self.start_us,
            self.end_us,
            lambda t: rates[(t % DAY_US) // (3600 * US)],
            snd.event_peak_db,
            snd.event_half_width_s,
        )
        return LevelProfile(lambda t: snd.level.value(t, key), events)

    def i2s_device(self, bus: int) -> Any:
        if bus != self._mic_bus:
            return None
        if self._mic is None:
            from .mic_model import MicModel

            self._mic = MicModel(
                self.sound_profile(),
                seed=self.seed,
                kind=self.scenario.sound.kind,
                silent=self._faults.get("mic_failure", []),
            )
        return self._mic

    def pm_at(self, t_us: int) -> tuple[float, float, float]:
        """True (PM1, PM2.5, PM10) in ug/m3."""
        return self.scenario.air.at(t_us, self.seed)

    def uart_device(self, uart: int) -> Any:
        if uart != self._pm_uart:
            return None
        if self._pms is None:
            from .pms5003_model import Pms5003Model

            self._pms = Pms5003Model(
                self.pm_at,
                seed=self.seed,
                checksum_error_rate=self.scenario.air.checksum_error_rate,
                silent=self._faults.get("pm_silent", []),
            )
        return self._pms

    def pin_level(self, pin: Any, t_us: int) -> int:
        """Level of a world-driven input; pins the world does not drive read 1 (pull-up)."""
        self._saw(t_us)
        track = self.pins.get(pin)
        return 1 if track is None else track.level(t_us)

    def ble_scan(self, t_us: int, duration_us: int, interval_us: int, window_us: int) -> None:
        self._saw(t_us)
        self._air.start(t_us, duration_us, interval_us, window_us)

    def ble_scan_stop(self, t_us: int) -> None:
        self._saw(t_us)
        self._air.stop(t_us)

    def ground_truth(self, window_s: int | None = None) -> list[dict[str, Any]]:
        """Per window of ``window_s`` (default: the scenario's), what really happened."""
        w = window_s or self.scenario.window_s
        # It depends on the scenario and seed only; the sound level's LAeq takes a while.
        if w not in self._truth:
            self._truth[w] = ground_truth(self, w)
        return [dict(row) for row in self._truth[w]]

    # -- helpers for tests and the privacy audit --------------------------------------------------

    def fault_intervals(self, kind: str) -> list[tuple[int, int]]:
        return list(self._faults.get(kind, []))

    def names_and_addresses(self, reported_only: bool = False) -> dict[str, list[Any]]:
        """Every address (bytes) and name (str) a phone advertised.

        By default all that any phone in the scenario would advertise (a superset, which is
        what a privacy audit wants to scan for); with ``reported_only`` just those that went
        out in adverts so far.
        """
        if reported_only:
            addresses, names = set(self._air.reported), set(self._air.reported_names)
        else:
            addresses = {e[2] for ph in self.phones for e in ph.epochs}
            names = {ph.name for ph in self.phones if ph.name is not None}
        return {"addresses": sorted(addresses), "names": sorted(names)}


# --- ground truth ------------------------------------------------------------------------------


def _weather_means(world: ScenarioWorld, c0: int, c1: int) -> tuple[float, float, float]:
    """Means over [c0, c1) of the continuous weather, sampled at the middle of 10 s slices."""
    n = max(1, (c1 - c0) // GT_SAMPLE_US)
    step = (c1 - c0) / n
    sums = [0.0, 0.0, 0.0]
    for i in range(n):
        for q, v in enumerate(world.environment(c0 + round((i + 0.5) * step))):
            sums[q] += v
    return sums[0] / n, sums[1] / n, sums[2] / n


def _pm_means(world: ScenarioWorld, c0: int, c1: int) -> tuple[float, float, float]:
    """Means over [c0, c1) of the true particulate concentrations, sampled every 10 s."""
    n = max(1, (c1 - c0) // GT_SAMPLE_US)
    step = (c1 - c0) / n
    sums = [0.0, 0.0, 0.0]
    for i in range(n):
        for q, v in enumerate(world.pm_at(c0 + round((i + 0.5) * step))):
            sums[q] += v
    return sums[0] / n, sums[1] / n, sums[2] / n


def ground_truth(world: ScenarioWorld, window_s: int) -> list[dict[str, Any]]:
    """What happened in each wall-clock-aligned window of ``window_s`` seconds.

    Windows are aligned to multiples of ``window_s`` since the epoch; the first and last may be
    only partly inside the scenario, and every figure covers the covered part only
    (``covered_s``). See docs/scenarios.md for the definition of each field.
    """
    start, end = world.start_us, world.end_us
    w_us = window_s * US
    first = start - start % w_us
    profile = world.sound_profile()
    n = -(-(end - first) // w_us)
    rows: list[dict[str, Any]] = []
    for w in range(n):
        c0, c1 = max(first + w * w_us, start), min(first + (w + 1) * w_us, end)
        t, rh, p = _weather_means(world, c0, c1)
        pm = _pm_means(world, c0, c1)
        rows.append(
            {
                "start": (first + w * w_us) // US,
                "end": (first + (w + 1) * w_us) // US,
                "covered_s": (c1 - c0) / US,
                "temp_mean_c": t,
                "rh_mean": rh,
                "pressure_mean_pa": p,
                "crossings_in": 0,
                "crossings_out": 0,
                "people_present_max": 0,
                "people_distinct": 0,
                "passersby": 0,
                "phones_distinct": 0,
                "addresses_distinct": 0,
                "phones_opted_out": 0,
                "sensor_present": _up_fraction(world.fault_intervals("sensor_disconnect"), c0, c1),
                "power_on": _up_fraction(world.fault_intervals("power_cut"), c0, c1),
                "network_up": _up_fraction(world.fault_intervals("network_outage"), c0, c1),
                "laeq_db": profile.laeq(c0, c1, 2 * US),
                "pm1_mean": pm[0],
                "pm2_5_mean": pm[1],
                "pm10_mean": pm[2],
            }
        )

    def windows(a: int, b: int) -> range:
        """Indices of windows that [a, b) overlaps within the scenario."""
        a, b = max(a, start), min(b, end)
        return range((a - first) // w_us, (b - 1 - first) // w_us + 1) if b > a else range(0)

    def bounds(w: int) -> tuple[int, int]:
        return max(first + w * w_us, start), min(first + (w + 1) * w_us, end)

    steps: list[tuple[int, int]] = []
    for person in world.people:
        a, d = person.arrival_us, person.departure_us
        for w in windows(a, d):
            rows[w]["passersby" if person.passerby else "people_distinct"] += 1
        if not person.passerby:
            steps += [(max(a, start), 1), (d, -1)]
        for c in person.crossings:
            if start <= c.end_us < end:
                rows[(c.end_us - first) // w_us][
                    "crossings_in" if c.inward else "crossings_out"
                ] += 1
        ph = person.phone
        if ph is None or ph.rssi < RSSI_FLOOR_DBM:
            continue
        for w in windows(a, d):
            lo, hi = bounds(w)
            if not ph.advertises_in(lo, hi):
                continue
            if ph.opted_out:
                rows[w]["phones_opted_out"] += 1
                continue
            rows[w]["phones_distinct"] += 1
            for e0, e1, _, _ in ph.epochs:
                if e1 > lo and e0 < hi and ph.advertises_in(max(e0, lo), min(e1, hi)):
                    rows[w]["addresses_distinct"] += 1

    # People present at once: sweep arrivals (+1) and departures (-1); at equal times the
    # departure goes first because presence is [arrival, departure).
    steps.sort()
    count, i = 0, 0
    for w, row in enumerate(rows):
        lo, hi = bounds(w)
        while i < len(steps) and steps[i][0] <= lo:
            count += steps[i][1]
            i += 1
        peak = count
        while i < len(steps) and steps[i][0] < hi:
            count += steps[i][1]
            i += 1
            peak = max(peak, count)
        row["people_present_max"] = peak
    return rows


def _up_fraction(faults: list[tuple[int, int]], c0: int, c1: int) -> float:
    down = sum(_overlap(f0, f1, c0, c1) for f0, f1 in faults)
    return 1.0 - down / (c1 - c0)
