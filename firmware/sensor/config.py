# The device configuration (/config.json, docs/device.md), validated at boot. A missing file
# means defaults; a bad file or a bad value is reported on the console, one line per problem,
# and the default is used instead: the device keeps running whatever still makes sense and
# never enters a crash loop over a typo.
import json

DEFAULTS = {
    "v": 1,
    "site": "",
    "device": 0,
    "wifi": None,
    "uplink": {"transport": "hostlink", "url": "", "topic": "atsource/up", "client_id": "",
               "keepalive": 60, "ca": ""},
    "counter_reserve": 64,
    "sensors": {"env": True, "doorway": True, "pir": True, "ble": True},
    "env": {"sample_s": 30, "osrs": 1},
    "ble": {"duty_pct": 30, "rssi_floor": -89},
    "doorway": {"body_milli": 4000, "gap_milli": 3000, "debounce_ms": 20},
    "outbox_frames": 2000,
    "watchdog_ms": 30000,
    "ntp_retry_s": 60,
}

# key -> (type, lo, hi) for integers, type only otherwise
_RULES = {
    "device": (int, 0, 0xFFFFFFFF),
    "outbox_frames": (int, 10, 100000),
    "counter_reserve": (int, 1, 4096),
    "uplink.keepalive": (int, 10, 3600),
    "watchdog_ms": (int, 0, 600000),  # 0: no watchdog
    "ntp_retry_s": (int, 5, 86400),
    "env.sample_s": (int, 1, 3600),
    "env.osrs": (int, 1, 5),
    "ble.duty_pct": (int, 1, 100),
    "ble.rssi_floor": (int, -127, 20),
    "doorway.body_milli": (int, 1000, 20000),
    "doorway.gap_milli": (int, 500, 20000),
    "doorway.debounce_ms": (int, 0, 1000),
}


def _check(key, value, rule):
    t = rule[0]
    if t is int and (type(value) is not int or not rule[1] <= value <= rule[2]):
        return "%s: expected an integer %d..%d" % (key, rule[1], rule[2])
    return None


def load(path="/config.json", log=print):
    """The effective configuration: defaults overlaid with the file's valid values."""
    cfg = {}
    for k, v in DEFAULTS.items():
        cfg[k] = dict(v) if isinstance(v, dict) else v
    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError:
        log("config: %s missing, using defaults" % path)
        return cfg
    except ValueError:
        log("config: %s is not valid JSON, using defaults" % path)
        return cfg
    if not isinstance(raw, dict):
        log("config: %s is not an object, using defaults" % path)
        return cfg
    for k, v in raw.items():
        if k not in DEFAULTS:
            log("config: unknown key %s ignored" % k)
            continue
        d = DEFAULTS[k]
        if isinstance(d, dict) and k != "wifi":
            if not isinstance(v, dict):
                log("config: %s: expected an object" % k)
                continue
            for sk, sv in v.items():
                if sk not in d:
                    log("config: unknown key %s.%s ignored" % (k, sk))
                    continue
                rule = _RULES.get(k + "." + sk)
                err = _check(k + "." + sk, sv, rule) if rule else None
                if err is None and rule is None and type(sv) is not type(d[sk]):
                    err = "%s.%s: expected %s" % (k, sk, type(d[sk]).__name__)
                if err:
                    log("config: " + err + ", using default")
                else:
                    cfg[k][sk] = sv
        elif k == "wifi":
            if v is None or (isinstance(v, dict) and isinstance(v.get("ssid"), str)):
                cfg[k] = v
            else:
                log("config: wifi: expected null or {ssid, key}")
        else:
            rule = _RULES.get(k)
            err = _check(k, v, rule) if rule else None
            if err is None and rule is None and type(v) is not type(d):
                err = "%s: expected %s" % (k, type(d).__name__)
            if err:
                log("config: " + err + ", using default")
            else:
                cfg[k] = v
    return cfg
