# The motion stream: rising edges of a PIR sensor's output per window (sensor/doorway.py
# MotionCounter, fed by a pin IRQ). About people: the gate noises and k-suppresses it.
from sensor import hal
from sensor.doorway import MotionCounter
from sensor.streams import Base


class Stream(Base):
    ID = "motion"

    def __init__(self, ctx):
        motion = MotionCounter()
        self.motion = motion

        def pir(pin):
            motion.edge(True)

        ctx.board.input("pir").irq(pir, hal.IRQ_RISING)

    def close(self, start, length):
        return (self.motion.take(),)
