# The doorway stream: people crossing a line of two beams (sensor/doorway.py LineCounter, fed
# by pin IRQs), in and out per window. About people: the gate noises and k-suppresses both.
from sensor import hal
from sensor.doorway import LineCounter
from sensor.streams import Base


class Stream(Base):
    ID = "doorway"

    def __init__(self, ctx):
        d = ctx.cfg
        line = LineCounter(d["body_milli"], d["gap_milli"], d["debounce_ms"] * 1000)
        self.line = line

        # Beams read 0 when broken (the receiver sees no light).
        def beam_a(pin):
            line.edge(0, pin.value() == 0, hal.ticks_us())

        def beam_b(pin):
            line.edge(1, pin.value() == 0, hal.ticks_us())

        ctx.board.input("beam_a").irq(beam_a, hal.IRQ_BOTH)
        ctx.board.input("beam_b").irq(beam_b, hal.IRQ_BOTH)

    def due_ms(self, now_ms):
        return 100 if self.line.busy() else None  # close an episode promptly

    def step(self, now_ms):
        self.line.poll(hal.ticks_us())

    def close(self, start, length):
        return self.line.take()  # (in, out): the catalogue's order
