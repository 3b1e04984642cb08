# Streams: one module per stream, sensor/streams/<name>.py, each with a class Stream
# (docs/architecture.md, "Add a sensor"). Base gives the methods a stream may leave out.


class Base:
    def open(self, start, now):
        pass

    def due_ms(self, now_ms):
        return None

    def step(self, now_ms):
        pass
