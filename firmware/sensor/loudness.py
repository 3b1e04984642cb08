"""A-weighted sound level of one audio block, and the window of block levels, in integers.

The A-weighting filter is IEC 61672-1's analog filter (poles at 20.6 Hz twice, 107.7 Hz,
737.9 Hz; four zeros at 0 Hz) by the bilinear transform at 16 kHz, as four first-order
sections ``y = x - x1 + y1 - (E * y1 >> Q)`` with E = 1 - pole in fixed point, and one
section (1 + z^-1) / (1 + 0.6 z^-1) in place of the two 12194 Hz poles: the transform's
warping near 8 kHz would take 1.5 dB at 5 kHz and 6 dB at 6.3 kHz off the exact mapping, the
tuned section stays within 0.8 dB of the IEC curve up to 6.3 kHz. Numerators need no
multiply. Every product stays below 2**30 (MicroPython's small-int range on 32-bit ports) for
samples up to about -6 dBFS, so the hot loop allocates nothing.

Levels are centi-dB (cdB): 6512 is 65.12 dB(A). The sample array is the caller's, overwritten
block after block; nothing here keeps a sample. See docs/sensors.md.

    meter = LevelMeter(mic)            # an i2smic.Mic
    cdb = meter.measure()              # one block's LAeq (None: the microphone failed)
    win = LevelWindow(); win.add(cdb); win.close()  # {"laeq": ..., "l90": ..., "samples": n}
"""

from micropython import const

RATE = const(16000)  # the filter's design rate
# 1 - pole, and its fixed-point shift, per section (bilinear transform at 16 kHz).
_E1 = const(2112)  # 20.6 Hz: 0.0080566 * 2**18
_Q1 = const(18)
_E3 = const(2713)  # 107.7 Hz: 0.0414000 * 2**16
_Q3 = const(16)
_E4 = const(2073)  # 737.9 Hz: 0.2530904 * 2**13
_Q4 = const(13)
_E5 = const(2458)  # high-frequency pole -0.6 (see below) * 2**12, stored positive
_Q5 = const(12)
_ESQ = const(3)  # energy of (y >> 3): keeps a 16-sample sum of squares below 2**30
_CHUNK = const(16)
# Calibration, cdB: 10*log10 of the mean square of a full-scale sine in 20-bit units (2**37),
# the filter's gain at 1 kHz (+1.49 dB, tests/unit/test_loudness.py checks it), and the
# energy scale of _ESQ (2**6).
_FS_CDB = const(11138)
_G1K_CDB = const(149)
_ESQ_CDB = const(1806)
_DBSPL_CDB = const(9400)  # the microphone's sensitivity is given at 94 dB SPL

# log2(1 + i/16) * 10000 for i = 0..16: the integer logarithm's table.
_LOG2 = (
    0, 875, 1699, 2479, 3219, 3923, 4594, 5236, 5850,
    6439, 7004, 7549, 8074, 8580, 9069, 9542, 10000,
)
# 10*log10(1 + 10**(-d/10)) in cdB for d = 0..30 dB: adding two levels on an energy basis.
_ADD = (
    301, 254, 212, 176, 146, 119, 97, 79, 64, 51, 41, 33, 27, 21, 17, 14,
    11, 9, 7, 5, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0,
)


def cdb(x):
    """1000 * log10(x) for an integer x >= 1 (10*log10 in centi-dB), to about 0.01 dB."""
    e = 0
    while x >= 0x10000:
        x >>= 1
        e += 1
    while x < 0x8000:
        x <<= 1
        e -= 1
    # x in [2**15, 2**16): log2 = 15 + e + log2(x / 2**15), the fraction from the table.
    f = x - 0x8000
    i = f >> 11
    r = f & 0x7FF
    lg = _LOG2[i] + (((_LOG2[i + 1] - _LOG2[i]) * r) >> 11)  # 1e-4 units of log2
    return (15 + e) * 30103 // 100 + lg * 30103 // 1000000


def level_add(a, b):
    """The energy sum of two levels in cdB (a (+) b), to about 0.01 dB."""
    if a < b:
        a, b = b, a
    d = a - b
    if d >= 3000:
        return a
    i = d // 100
    r = d - i * 100
    return a + _ADD[i] + (_ADD[i + 1] - _ADD[i]) * r // 100


def weighted_energy(buf, start, end):
    """Sum of squares of the A-weighted block buf[start:end], in (20-bit units >> 3)**2.

    buf holds 32-bit I2S frames (array 'i'): 24-bit samples, left-justified. The filter starts
    at rest at buf[0] and runs over buf[0:end]; samples before ``start`` only settle it. The
    bound end - start must be a multiple of 16.
    """
    v0 = buf[0] >> 12
    v1 = v2 = v3 = v4 = v5 = 0
    # Settle: the sections' transients from the block's abrupt start die out here.
    for i in range(start):
        x = buf[i] >> 12
        a = x - v0 + v1 - ((_E1 * v1) >> _Q1)
        v0 = x
        b = a - v1 + v2 - ((_E1 * v2) >> _Q1)
        v1 = a
        c = b - v2 + v3 - ((_E3 * v3) >> _Q3)
        v2 = b
        d = c - v3 + v4 - ((_E4 * v4) >> _Q4)
        v3 = c
        v5 = d + v4 - ((_E5 * v5) >> _Q5)
        v4 = d
    i = start
    total = 0
    while i < end:
        s = 0
        for k in range(i, i + _CHUNK):
            x = buf[k] >> 12
            a = x - v0 + v1 - ((_E1 * v1) >> _Q1)
            v0 = x
            b = a - v1 + v2 - ((_E1 * v2) >> _Q1)
            v1 = a
            c = b - v2 + v3 - ((_E3 * v3) >> _Q3)
            v2 = b
            d = c - v3 + v4 - ((_E4 * v4) >> _Q4)
            v3 = c
            v5 = d + v4 - ((_E5 * v5) >> _Q5)
            v4 = d
            q = (v5 + 4) >> _ESQ
            s += q * q
        total += s
        i += _CHUNK
    return total


def block_level(energy, n, sens_cdb=-2600):
    """The A-weighted level in cdB SPL of a block whose weighted_energy over n samples is
    ``energy``, for a microphone of sensitivity ``sens_cdb`` (cdBFS at 94 dB SPL, 1 kHz)."""
    if energy <= 0:
        energy = 1  # digital silence: reported as the floor, not as minus infinity
    return (
        _DBSPL_CDB - sens_cdb + cdb(energy) + _ESQ_CDB - cdb(n) - _FS_CDB - _G1K_CDB
    )


class LevelMeter:
    """Block levels from an i2smic.Mic: each measure() reads one block into the mic's buffer
    and returns its level in cdB(A), or None when the microphone failed (see Mic.read)."""

    def __init__(self, mic, settle=128, sens_cdb=-2600):
        n = len(mic.buf)
        self.mic = mic
        self.settle = settle
        self.end = settle + ((n - settle) // _CHUNK) * _CHUNK
        self.sens = sens_cdb

    def measure(self):
        if not self.mic.read():
            return None
        e = weighted_energy(self.mic.buf, self.settle, self.end)
        return block_level(e, self.end - self.settle, self.sens)


_LO = const(2000)  # the histogram covers 20.0 .. 139.9 dB in 0.5 dB bins
_BIN = const(50)
_NBINS = const(240)


class LevelWindow:
    """One window of block levels: LAeq (energy mean), min, max, and L10/L90 (levels exceeded
    10 % and 90 % of the sampled time) from a 240-bin histogram: constant memory."""

    def __init__(self):
        self.hist = bytearray(_NBINS)
        self.reset()

    def reset(self):
        h = self.hist
        for i in range(_NBINS):
            h[i] = 0
        self.n = 0
        self.sum = -1  # energy sum of the levels, as a level in cdB; -1: none yet
        self.lo = 0
        self.hi = 0

    def add(self, level):
        if self.n == 0:
            self.sum = self.lo = self.hi = level
        else:
            self.sum = level_add(self.sum, level)
            if level < self.lo:
                self.lo = level
            if level > self.hi:
                self.hi = level
        self.n += 1
        b = (level - _LO) // _BIN
        b = 0 if b < 0 else (_NBINS - 1 if b >= _NBINS else b)
        if self.hist[b] < 255:
            self.hist[b] += 1

    def _exceeded(self, pct):
        # The level exceeded by pct % of the blocks: walk down from the top of the histogram
        # to the bin holding that rank and interpolate inside it.
        want = self.n * pct  # in 1/100 blocks
        seen = 0
        for b in range(_NBINS - 1, -1, -1):
            c = self.hist[b] * 100
            if c and seen + c >= want:
                frac = (want - seen) * _BIN // c  # how far down into the bin
                v = _LO + (b + 1) * _BIN - frac
                return self.lo if v < self.lo else (self.hi if v > self.hi else v)
            seen += c
        return self.lo

    def close(self):
        """The window's values (cdB), or None when no block was measured; then reset."""
        if self.n == 0:
            return None
        n = self.n
        out = {
            "laeq": self.sum - cdb(n),
            "lamin": self.lo,
            "lamax": self.hi,
            "l10": self._exceeded(10),
            "l90": self._exceeded(90),
            "samples": n,
        }
        self.reset()
        return out
