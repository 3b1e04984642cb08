"""An I2S MEMS microphone (INMP441, ICS-43434 class): 24-bit samples in 32-bit slots, mono.

The microphone is clocked only while a block is read: ``read()`` starts the I2S bus, throws
away the microphone's start-up (256 ms, and anything the DMA ring held), fills the one
preallocated buffer and stops the bus again, so the microphone sleeps between blocks and no
block can hold audio from another moment. The buffer is overwritten by every read and never
leaves the driver's caller (loudness.LevelMeter): no sample is kept, printed, stored or sent.

    mic = Mic(board.i2s_mic, frames=512)   # a factory returning a started machine.I2S
    mic.probe()                             # OSError(ENODEV): no microphone answers
    if mic.read(): ... mic.buf ...          # False: stuck data (counted in mic.faults)
"""

import array

from micropython import const

_ENODEV = const(19)


class Mic:
    def __init__(self, open_i2s, frames=512, startup=4096):
        # open_i2s(ibuf) returns a started machine.I2S in RX mode, 32 bits, mono, 16 kHz.
        self._open = open_i2s
        self.buf = array.array("i", [0] * frames)
        self._mv = memoryview(self.buf)
        # Frames dropped after the clock starts: the INMP441 is operational 2**18 SCK cycles
        # after power-up (its datasheet), 4096 frames of 64 cycles: 256 ms at 16 kHz.
        self._skip = startup
        self.faults = 0

    def read(self):
        """One block into self.buf; False (and a fault counted) when the data is stuck."""
        i2s = self._open(len(self.buf) * 4)
        try:
            skip = self._skip
            mv = self._mv
            while skip > 0:  # start-up samples land in the same buffer and are overwritten
                k = skip if skip < len(self.buf) else len(self.buf)
                i2s.readinto(mv[:k])
                skip -= k
            n = i2s.readinto(mv)
        finally:
            i2s.deinit()
        if n != len(self.buf) * 4 or self._stuck():
            self.faults += 1
            return False
        return True

    def _stuck(self):
        # A missing or broken microphone reads all zeros, or one value (a floating or shorted
        # data line). Real audio differs from one sample to the next, so this stops at once.
        b = self.buf
        x = b[0]
        for i in range(1, len(b)):
            if b[i] != x:
                return False
        return True

    def probe(self):
        if not self.read():
            raise OSError(_ENODEV)
