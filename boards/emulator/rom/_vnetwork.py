# network: a station interface whose link follows the world (outages come from the scenario).
import _board as _b

STA_IF = 0
AP_IF = 1
if _b.cfg["port"] == "esp32":
    STAT_IDLE = 1000
    STAT_CONNECTING = 1001
    STAT_WRONG_PASSWORD = 202
    STAT_NO_AP_FOUND = 201
    STAT_CONNECT_FAIL = 203
    STAT_GOT_IP = 1010
else:
    STAT_IDLE = 0
    STAT_CONNECTING = 1
    STAT_WRONG_PASSWORD = -3
    STAT_NO_AP_FOUND = -2
    STAT_CONNECT_FAIL = -1
    STAT_GOT_IP = 3

_up = True  # the world's network, updated by events
_stations = []  # both interfaces, to tell whether the board has joined a network


def joined():
    for w in _stations:
        if w._joined():
            return True
    return False


def _net(ev):
    global _up
    _up = bool(ev[3])


_b.handlers["n"] = _net


def hostname(name=None):
    if name is None:
        return _b.cfg["hostname"]


class WLAN:
    # One static object per interface on both ports (ports/esp32/network_wlan.c
    # wlan_sta_obj, extmod/network_cyw43.c network_cyw43_wl_sta): WLAN() allocates nothing
    # and returns the same object, in whatever state it was left.
    def __new__(cls, interface_id=STA_IF):
        w = _wlans.get(interface_id)
        if w is None:
            raise ValueError("invalid WLAN interface identifier")
        return w

    def __init__(self, interface_id=STA_IF):
        pass

    def active(self, is_active=None):
        if is_active is None:
            return self._active
        self._active = bool(is_active)
        if not self._active:
            self._ssid = None
        return None

    def connect(self, ssid=None, key=None, *, bssid=None):
        if not self._active:
            raise OSError(1)  # EPERM, "Wifi Not Started" on esp32
        self._ssid = ssid
        self._since = _b.ms

    def disconnect(self):
        self._ssid = None

    def _joined(self):
        # Association and DHCP take about two seconds on a real board.
        return self._active and self._ssid is not None and _up and _b.ms - self._since >= 2000

    def isconnected(self):
        _b.cost()
        return self._joined()

    def status(self, param=None):
        if param == "rssi":
            return -60
        if self._ssid is None:
            return STAT_IDLE
        return STAT_GOT_IP if self._joined() else STAT_CONNECTING

    def ifconfig(self, *args):
        if self._joined():
            return ("10.0.0.2", "255.255.255.0", "10.0.0.1", "10.0.0.1")
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")

    def config(self, *args, **kwargs):
        if args and args[0] == "mac":
            return bytes.fromhex(_b.cfg["wifi_mac"])
        if args and args[0] in ("ssid", "essid"):
            return self._ssid or ""
        if args and args[0] == "hostname":
            return _b.cfg["hostname"]
        return None

    def scan(self):
        return []


def _wlan(i):
    w = object.__new__(WLAN)
    w._if = i
    w._active = False
    w._ssid = None
    w._since = 0
    _stations.append(w)
    return w


_wlans = {STA_IF: _wlan(STA_IF), AP_IF: _wlan(AP_IF)}
