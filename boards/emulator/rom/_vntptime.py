# ntptime, as frozen into the esp32 and rp2 builds: sets the RTC from the network's time.
import _board as _b
import _vnetwork

host = "pool.ntp.org"
timeout = 1


def time():
    if not _vnetwork._up:
        raise OSError(110)  # ETIMEDOUT, as when no reply comes back
    r = _b.req({"q": "ntp", "now": [_b.ms, _b.us]})
    _b.advance(20000)  # a round trip on a LAN
    import _vtime

    return r // 1000000 - _vtime._off  # seconds since the port's epoch, as ntptime returns


def settime():
    import _vmachine

    if not _vnetwork._up:
        raise OSError(110)
    r = _b.req({"q": "ntp", "now": [_b.ms, _b.us]})
    _b.advance(20000)
    _vmachine._set_rtc(r)
