# The stream catalogue: every stream's vocabulary, defined once, read by the device and the
# host (docs/architecture.md "One catalogue"). The device reads it at boot (policy, config,
# gate and streams take what they need) and then drops it from RAM; the host tools load this
# very file (atsource/streams.py) for record names, the policy validator, the notice and the
# reports. Texts people read stay in host_tools/atsource/catalogues/*.toml, keyed
# "streams.<name>". Adding a stream: one entry in STREAMS (and its keys, faults, config).
from micropython import const  # on the host, atsource/streams.py supplies it

DAY_S = const(86400)

# ---- record keys (docs/device.md): a key means the same in every stream ----
K_START = const(0)
K_LENGTH = const(1)
K_POLICY = const(2)
K_COUNT = const(6)
K_STREAM = const(7)
K_SAMPLES = const(8)
K_STATUS = const(16)
K_EPSILON = const(17)

# key, name, kind, unit, scale. kind: time (Unix s), uint, int, bytes, text, enum or bits
# (their names in NAMES). The order is the export's column order.
KEYS: tuple = (
    (K_START, "window_start", "time", "UTC", 1),
    (K_LENGTH, "window_length_s", "uint", "s", 1),
    (K_POLICY, "policy_hash", "bytes", "hex", 1),
    (K_STREAM, "stream", "enum", "", 1),
    (3, "temperature_mean_c", "int", "degC", 100),
    (10, "temperature_min_c", "int", "degC", 100),
    (11, "temperature_max_c", "int", "degC", 100),
    (4, "humidity_mean_pct", "uint", "%RH", 100),
    (12, "humidity_min_pct", "uint", "%RH", 100),
    (13, "humidity_max_pct", "uint", "%RH", 100),
    (5, "pressure_mean_hpa", "uint", "hPa", 100),
    (14, "pressure_min_hpa", "uint", "hPa", 100),
    (15, "pressure_max_hpa", "uint", "hPa", 100),
    (K_SAMPLES, "samples", "uint", "", 1),
    (9, "samples_lost", "uint", "", 1),
    (K_COUNT, "count", "uint", "", 1),
    (K_STATUS, "count_status", "enum", "", 1),
    (K_EPSILON, "noise_epsilon", "uint", "", 1000),
    (20, "uptime_s", "uint", "s", 1),
    (21, "boots", "uint", "", 1),
    (22, "reset_cause", "enum", "", 1),
    (23, "free_heap_bytes", "uint", "B", 1),
    (24, "sensor_errors", "uint", "", 1),
    (25, "faults", "bits", "", 1),
    (26, "outbox_depth", "uint", "", 1),
    (27, "frames_dropped_total", "uint", "", 1),
    # reserved for the health record: the firmware's version string, once firmware sends it
    (28, "firmware_version", "text", "", 1),
    (30, "laeq", "int", "dB(A)", 100),
    (31, "lamin", "int", "dB(A)", 100),
    (32, "lamax", "int", "dB(A)", 100),
    (33, "l10", "int", "dB(A)", 100),
    (34, "l90", "int", "dB(A)", 100),
    (40, "pm1_mean", "uint", "ug/m3", 10),
    (41, "pm2_5_mean", "uint", "ug/m3", 10),
    (42, "pm10_mean", "uint", "ug/m3", 10),
    (43, "pm2_5_max", "uint", "ug/m3", 10),
    (44, "pm10_max", "uint", "ug/m3", 10),
)

# Record stream ids (key 7): one per record kind; a people stream may make several.
RECORDS: tuple = (
    (1, "env"),
    (2, "door_in"),
    (3, "door_out"),
    (4, "motion"),
    (5, "ble"),
    (6, "health"),
    (7, "noise"),
    (8, "air"),
    (15, "selftest"),
)
R_SELFTEST = const(15)

# Key 16: why a people stream released no value.
BELOW_K = const(1)
EXHAUSTED = const(2)
UNAVAILABLE = const(3)
STATUS: tuple = (
    (BELOW_K, "below-k"), (EXHAUSTED, "budget-exhausted"), (UNAVAILABLE, "unavailable")
)
# Key 22: the cause of the last reset, by code (hal.reset_cause() names them without hyphens).
CAUSES: tuple = ("power", "watchdog", "reset", "deep-sleep", "other")
# Key 25: fault bits, by bit number: (name, the stream that raises it, "" for the scheduler).
# A stream's own faults are numbered 0, 1... in this order (ctx.fault(i, on)).
FAULTS: tuple = (
    ("env-missing", "env"),
    ("env-chip-id", "env"),
    ("env-out-of-range", "env"),
    ("env-stuck", "env"),
    ("ble-off", "ble"),
    ("clock-unset", ""),
    ("stream-refused", ""),
    ("noise-missing", "noise"),
    ("air-missing", "air"),
    ("air-frame", "air"),
)
# enum and bits keys -> their names: ((code, name), ...) or names by code / bit number
NAMES: dict = {K_STREAM: RECORDS, K_STATUS: STATUS, 22: CAUSES, 25: FAULTS}

# ---- policy field rules (docs/privacy.md) ----
# Every stream has window_s (60..86400, dividing a day) and release. Then its own fields, in
# the order their reasons are given; every field is required:
# (name, T_INT, lo, hi) | (name, T_POW2, lo, hi) | (name, T_NOISE) |
# (name, T_RES, ((sub, lo, hi, record keys it rounds), ...))
T_INT = const(0)
T_POW2 = const(1)
T_NOISE = const(2)
T_RES = const(3)
_K: tuple = ("k", T_INT, 2, 1000)
_NOISE: tuple = ("noise", T_NOISE)

# ---- streams, in the scheduler's order (health last: it reports what the others counted) ----
# name: (record id (None: one record per release, people streams), people,
#        releases ((release name, record keys | record id), ...), policy fields,
#        the field bounding one person's contribution (None: not about people),
#        sensors config default (None: always on), config section ((key, default, lo, hi), ...))
STREAMS: tuple = (
    ("env", 1, False,
     (("mean", (3, 4, 5)), ("min", (10, 12, 14)), ("max", (11, 13, 15)), ("samples", (8, 9))),
     (("resolution", T_RES, (("temp_centi", 1, 10000, (3, 10, 11)),
                             ("rh_centi", 1, 10000, (4, 12, 13)),
                             ("pressure_pa", 1, 100000, (5, 14, 15)))),),
     None, True, (("sample_s", 30, 1, 3600), ("osrs", 1, 1, 5))),
    ("doorway", None, True, (("in", 2), ("out", 3)),
     (_K, _NOISE, ("crossings_per_person", T_INT, 1, 1000)),
     "crossings_per_person", True,
     (("body_milli", 4000, 1000, 20000), ("gap_milli", 3000, 500, 20000),
      ("debounce_ms", 20, 0, 1000))),
    ("motion", None, True, (("count", 4),),
     (_K, _NOISE, ("events_per_person", T_INT, 1, 1000)),
     "events_per_person", True, ()),
    # A phone rotating its address every rotation_s shows at most ceil(window / rotation) + 1
    # addresses in a window (bound()); the count is of set sketch bits (gate: sketch_bits).
    ("ble", None, True, (("distinct", 5),),
     (_K, _NOISE, ("rssi_floor", T_INT, -120, 0), ("sketch_bits", T_POW2, 256, 65536),
      ("rotation_s", T_INT, 10, DAY_S)),
     "rotation_s", True, (("duty_pct", 30, 1, 100), ("rssi_floor", -89, -127, 20))),
    ("noise", 7, False,
     (("laeq", (30,)), ("lamin", (31,)), ("lamax", (32,)), ("l10", (33,)), ("l90", (34,)),
      ("samples", (8,))),
     (), None, False, (("every_s", 60, 10, 3600), ("sens_cdb", -2600, -6000, 0))),
    ("air", 8, False,
     (("mean", (40, 41, 42)), ("max", (43, 44)), ("samples", (8,))),
     (), None, False, (("every_s", 300, 60, 3600), ("warmup_s", 30, 10, 120))),
    ("health", 6, False,
     (("uptime", (20,)), ("resets", (21, 22)), ("heap", (23,)), ("errors", (24,)),
      ("faults", (25,)), ("queue", (26, 27))),
     (), None, None, ()),
)  # fmt: skip
# Indexes into a STREAMS entry. (The tables are annotated `tuple` only so the firmware's type
# check treats their mixed entries as opaque; MicroPython ignores annotations.)
S_NAME = const(0)
S_RECORD = const(1)
S_PEOPLE = const(2)
S_RELEASES = const(3)
S_FIELDS = const(4)
S_BOUND = const(5)
S_ON = const(6)
S_CONFIG = const(7)

# Old names still read in /config.json's "sensors" (docs/device.md): alias -> stream.
SENSOR_ALIASES: tuple = (("pir", "motion"),)


def fault_bit(name):
    """The bit (a mask) of fault `name` in key 25."""
    for i in range(len(FAULTS)):
        if FAULTS[i][0] == name:
            return 1 << i
    raise KeyError(name)


def stream(name) -> tuple:
    """The STREAMS entry of stream `name` (KeyError if there is none)."""
    for s in STREAMS:
        if s[S_NAME] == name:
            return s
    raise KeyError(name)


def names():
    return tuple(s[S_NAME] for s in STREAMS)


def people():
    return tuple(s[S_NAME] for s in STREAMS if s[S_PEOPLE])


def bound(name, s, window):
    """The most one person adds to one window (window_s: `window`, None if not valid) of
    stream `name` under policy fields s (its L1 sensitivity), None if the fields do not say.
    No people stream can tell whose event it is, so nothing can be clamped per person: the
    bound is the policy's assumption and the noise is scaled to it."""
    f = stream(name)[S_BOUND] if name in names() else None
    if f is None:
        return None
    v = s.get(f)
    if not isinstance(v, int) or isinstance(v, bool):
        return None
    if f == "rotation_s":
        if window is None or v < 1:
            return None
        return -(-window // v) + 1
    return v
