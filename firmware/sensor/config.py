# The device configuration (/config.json, docs/device.md): the schema and its one validator.
# The device validates at boot: a missing file means defaults; each bad setting is reported on
# the console, one line per problem, and ignored (its default applies), so the device keeps
# running whatever still makes sense and never enters a crash loop over a typo.
# The host (atsource/devconfig.py) loads this very file under CPython and refuses a config with
# any problem before provisioning, so both sides give the same reasons from one table.
# Each stream's settings (a "sensors" switch and its own section) come from the stream
# catalogue (sensor/catalogue.py); the rest is the device's own.
import json

from sensor import catalogue as cat

DEFAULTS = {
    "v": 1,
    "site": "",
    "device": 0,
    "wifi": None,
    "uplink": {"transport": "hostlink", "url": "", "topic": "atsource/up", "client_id": "",
               "keepalive": 60, "ca": ""},
    "counter_reserve": 64,
    "sensors": {},
    "outbox_frames": 2000,
    "watchdog_ms": 30000,
    "ntp_retry_s": 60,
}

# key -> (type, lo, hi) for integers, type only otherwise
_RULES = {
    "v": (int, 1, 1),
    "device": (int, 0, 0xFFFFFFFF),
    "outbox_frames": (int, 10, 100000),
    "counter_reserve": (int, 1, 4096),
    "uplink.keepalive": (int, 10, 3600),
    "watchdog_ms": (int, 0, 600000),  # 0: no watchdog
    "ntp_retry_s": (int, 5, 86400),
}
for _s in cat.STREAMS:
    if _s[cat.S_ON] is not None:
        DEFAULTS["sensors"][_s[cat.S_NAME]] = _s[cat.S_ON]
    if _s[cat.S_CONFIG]:
        DEFAULTS[_s[cat.S_NAME]] = {}
        for _k in _s[cat.S_CONFIG]:
            DEFAULTS[_s[cat.S_NAME]][_k[0]] = _k[1]
            _RULES[_s[cat.S_NAME] + "." + _k[0]] = (int, _k[2], _k[3])
# A deprecated name in "sensors" is read as the stream's (docs/device.md): alias -> stream.
ALIASES = dict(cat.SENSOR_ALIASES)

# transport -> the URL schemes it accepts (sensor/transport.py, sensor/mqtt.py, sensor/httppost.py)
TRANSPORTS = {"hostlink": (), "mqtt": ("mqtt", "mqtts"), "http": ("http", "https")}
# Wi-Fi settings: the network name (1..32 bytes) and its key ("" for an open network, else a
# WPA2 passphrase of 8..63 characters or 64 hex digits).
WIFI_KEYS = ("ssid", "key")


def _check(key, value, default):
    rule = _RULES.get(key)
    if rule is not None:
        if type(value) is not int or not rule[1] <= value <= rule[2]:
            if rule[1] == rule[2]:
                return "%s: expected %d" % (key, rule[1])
            return "%s: expected an integer %d..%d" % (key, rule[1], rule[2])
        return None
    if type(value) is not type(default):
        return "%s: expected %s" % (key, _TYPE_NAMES.get(type(default), "a value"))
    return None


_TYPE_NAMES = {bool: "true or false", int: "an integer", str: "a string"}


def _wifi(v, problems):
    if v is None:
        return None
    if not isinstance(v, dict):
        problems.append("wifi: expected null or an object {ssid, key}")
        return None
    for k in v:
        if k not in WIFI_KEYS:
            problems.append("wifi.%s: unknown key (the Wi-Fi settings are ssid and key)" % k)
    ssid = v.get("ssid")
    if not isinstance(ssid, str) or not 1 <= len(ssid.encode()) <= 32:
        problems.append("wifi.ssid: expected the network name, 1..32 bytes")
        return None
    key = v.get("key", "")
    if not isinstance(key, str) or not (
        key == "" or 8 <= len(key) <= 63 or (len(key) == 64 and _is_hex(key))
    ):
        problems.append("wifi.key: expected \"\" (open network) or a WPA2 passphrase of 8..63 "
                        "characters")
        return None
    return {"ssid": ssid, "key": key}


def _is_hex(s):
    for c in s:
        if c not in "0123456789abcdefABCDEF":
            return False
    return True


def _url_problem(transport, url):
    schemes = TRANSPORTS[transport]
    if not schemes:
        return None
    i = url.find("://")
    host = url[i + 3:].split("/")[0].split("@")[-1].split(":")[0] if i > 0 else ""
    if i <= 0 or url[:i] not in schemes or not host:
        return "uplink.url: the %s transport needs a %s:// or %s:// URL with a host" % (
            transport, schemes[0], schemes[1])
    port = url[i + 3:].split("/")[0].split("@")[-1][len(host):]
    if port and (port[0] != ":" or not port[1:].isdigit() or not 0 < int(port[1:]) < 65536):
        return "uplink.url: bad port in %s://%s..." % (url[:i], host)
    return None


def check(raw):
    """(effective configuration, problems): defaults overlaid with the valid values of ``raw``
    (the parsed JSON); one reason per bad or unknown setting, each of which is ignored."""
    cfg = {}
    for k, v in DEFAULTS.items():
        cfg[k] = dict(v) if isinstance(v, dict) else v
    problems = []
    if not isinstance(raw, dict):
        problems.append("the configuration is not a JSON object")
        return cfg, problems
    for k, v in raw.items():
        if k not in DEFAULTS:
            problems.append("%s: unknown key" % k)
            continue
        d = DEFAULTS[k]
        if k == "wifi":
            cfg[k] = _wifi(v, problems)
        elif isinstance(d, dict):
            if not isinstance(v, dict):
                problems.append("%s: expected an object" % k)
                continue
            for sk, sv in v.items():
                if k == "sensors" and sk in ALIASES:
                    if ALIASES[sk] in v:
                        continue  # the stream's own name wins over its old one
                    sk = ALIASES[sk]
                if sk not in d:
                    problems.append("%s.%s: unknown key" % (k, sk))
                    continue
                err = _check(k + "." + sk, sv, d[sk])
                if err:
                    problems.append(err)
                else:
                    cfg[k][sk] = sv
        else:
            err = _check(k, v, d)
            if err:
                problems.append(err)
            else:
                cfg[k] = v
    up = cfg["uplink"]
    if up["transport"] not in TRANSPORTS:
        problems.append("uplink.transport: expected one of %s, not %s" % (
            ", ".join(sorted(TRANSPORTS)), up["transport"]))
        up["transport"] = DEFAULTS["uplink"]["transport"]
    err = _url_problem(up["transport"], up["url"])
    if err:
        problems.append(err)
        up["transport"] = DEFAULTS["uplink"]["transport"]  # frames wait in the outbox
    return cfg, problems


def load(path="/config.json", log=print):
    """The effective configuration: defaults overlaid with the file's valid values."""
    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError:
        log("config: %s missing, using defaults" % path)
        return check({})[0]
    except ValueError:
        log("config: %s is not valid JSON, using defaults" % path)
        return check({})[0]
    cfg, problems = check(raw)
    for p in problems:
        log("config: %s (ignored)" % p)
    sensors = raw.get("sensors") if isinstance(raw, dict) else None
    if isinstance(sensors, dict):
        for old in sensors:
            if old in ALIASES:
                log("config: sensors.%s is deprecated, read as sensors.%s" % (old, ALIASES[old]))
    return cfg
