# The outbox: sealed frames wait on flash, in order, until the transport confirms them
# (docs/uplink.md has the format and the crash analysis).
#
# /outbox.log   header b"AOB" 0x01 gen(4), then entries: len(2) crc32(4) frame(len); the CRC
#               covers the length bytes and the frame.
# /outbox.head  magic b"OBH1" gen(4) head(4) dropped(4) crc32(4): the offset of the oldest
#               unconfirmed entry in the log of generation gen, and the frames dropped in the
#               outbox's life (monotonic, never cleared: every health record carries it, so
#               losses are known however many health records were dropped themselves).
#               Written to a temporary file and renamed (atomic).
#
# An append is one write to the end of the log, made durable by close. A power cut can only
# leave a torn last entry, which the next open() finds (bad length or CRC) and cuts off. A head
# from another generation (a crash between a compaction's rename and its head write) means the
# log starts live. Confirmed frames are forgotten by moving the head; the log is deleted when
# everything is confirmed, or rewritten without its dead prefix when that grows large.
#
# The rare paths (open, repair, compaction, a full flash) are in sensor/outboxfix.py, loaded
# only while they run.
import binascii
import os

from micropython import const

from sensor import forget

MAX_FRAME = const(320)  # the largest sealed frame: 256-byte bucket + 34 bytes of COSE
HDR = const(8)  # file header (public: outboxfix reads it too)
_EHDR = const(6)  # entry header
_ENOSPC = const(28)  # MicroPython's errno module has no name for it
_COMPACT_AT = const(4096)  # dead prefix (bytes) worth a rewrite, once it also exceeds the rest
_HEAD_MAGIC = b"OBH1"


def _u32(b, off):
    return int.from_bytes(b[off : off + 4], "big")


def _crc(data, value=0):
    return binascii.crc32(data, value) & 0xFFFFFFFF


def _errno(e):
    return e.args[0] if e.args else -1


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


_fixing = 0  # rare-path calls under way: one may run inside another (recover in make_room)


def _fix(name, ob):
    # A rare path (sensor/outboxfix.py): loaded for the call, forgotten when the outermost
    # one returns (even if it fails): forget() empties the module, which an outer call still
    # runs in.
    global _fixing
    from sensor import outboxfix

    _fixing += 1
    try:
        return getattr(outboxfix, name)(ob)
    finally:
        _fixing -= 1
        if not _fixing:
            forget("outboxfix")


class Outbox:
    def __init__(self, path="/outbox.log", capacity=2000):
        if capacity < 1:
            raise ValueError("capacity")
        base = path[:-4] if path.endswith(".log") else path
        self.path = path
        self.head_path = base + ".head"
        self._tmp = base + ".tmp"
        self.capacity = capacity
        self.writes = 0  # durable file writes (appends, head records, rewrites)
        self.depth = 0  # frames waiting
        self.dropped = 0  # frames dropped, ever (persisted with the head; never decreases)
        self._gen = 0
        self._head = HDR  # offset of the oldest waiting entry
        self._end = HDR  # end of the last whole entry
        self._exists = False  # whether the log file holds a valid header
        self._dirty = False  # head or dropped changed since the head record was written
        self._saved = 0  # the drop total the head record on flash holds
        self._suspect = False  # a failed write may have left part of an entry
        self._buf = bytearray(_EHDR + MAX_FRAME)
        self._mv = memoryview(self._buf)
        _fix("recover", self)
        if self.depth > self.capacity:  # the configured capacity shrank
            while self.depth > self.capacity:
                self._drop_head()
            self.sync()

    # ---- reading -------------------------------------------------------------------------------
    def _entry(self, f, off):
        # Length of the whole entry at off (into self._buf), or 0 if it is torn or damaged.
        mv = self._mv
        f.seek(off)
        if f.readinto(mv[:_EHDR]) != _EHDR:
            return 0
        n = (self._buf[0] << 8) | self._buf[1]
        if n == 0 or n > MAX_FRAME:
            return 0
        if f.readinto(mv[_EHDR : _EHDR + n]) != n:
            return 0
        if _crc(mv[_EHDR : _EHDR + n], _crc(mv[:2])) != _u32(self._buf, 2):
            return 0
        return _EHDR + n

    def _reload(self):
        # The log changed under us (damaged flash): save what RAM knows, then rebuild.
        self.sync()
        _fix("recover", self)

    def peek(self):
        """The oldest waiting frame (bytes), or None when the outbox is empty."""
        if not self.depth:
            return None
        with open(self.path, "rb") as f:
            n = self._entry(f, self._head)
        if not n:
            # Damaged under us (it was whole at open): rebuild from flash.
            self._reload()
            return self.peek()
        return bytes(self._buf[_EHDR:n])

    def __iter__(self):
        # Waiting frames, oldest first (reads the log; for inspection and tests).
        if not self.depth:
            return
        off = self._head
        with open(self.path, "rb") as f:
            while off < self._end:
                n = self._entry(f, off)
                if not n:
                    return
                yield bytes(self._buf[_EHDR:n])
                off += n

    # ---- removing --------------------------------------------------------------------------------
    def _advance(self):
        with open(self.path, "rb") as f:
            n = self._entry(f, self._head)
        if not n:
            self._reload()
            return False
        self._head += n
        self.depth -= 1
        self._dirty = True
        return True

    def confirm(self, sync=True):
        """The transport confirmed the oldest frame: forget it. With sync=False the head is
        written at the next sync() (a power cut before then delivers it again: a duplicate the
        receiver rejects as a replay, never a loss)."""
        if self.depth and self._advance():
            if not self.depth:
                self._drain()
            elif sync:
                self.sync()

    def _drop_head(self):
        if self._advance():
            self.dropped += 1
            if not self.depth:
                self._drain()

    def lost(self):
        """Count a record lost before it reached the outbox (it could not be sealed or
        stored); persisted at once, like every drop."""
        self.dropped += 1
        self._dirty = True
        self.sync()

    def _drain(self):
        # Everything confirmed: delete the log first. A cut before the head record is updated
        # leaves a head without a log, which open() ignores (it keeps only the dropped count).
        # Once anything was dropped, the head record stays for good: it holds the total.
        _remove(self.path)
        self._exists = False
        self._suspect = False
        self._gen = (self._gen + 1) & 0xFFFFFFFF
        self._head = self._end = HDR
        self._dirty = True
        self.sync()

    def sync(self):
        """Make the head durable (compacting the log when its dead prefix is large). A full
        flash leaves it for later: the only risk is a frame delivered twice."""
        if not self._dirty:
            return
        if not self._exists:
            # Drained: the head record only has the drop total left to keep. If it holds it
            # already, leave it: its generation is now an old one, which open() reads as "no
            # log" (one write less per drain, as before any drop).
            if not self.dropped:
                _remove(self.head_path)
            if not self.dropped or self.dropped == self._saved:
                self._dirty = False
                return
        dead = self._head - HDR
        try:
            if self._exists and dead >= _COMPACT_AT and dead >= self._end - self._head:
                _fix("compact", self)
            else:
                self._write_head()
        except OSError as e:
            if _errno(e) != _ENOSPC:
                raise

    def _write_head(self):
        rec = bytearray(_HEAD_MAGIC)
        for v in (self._gen, self._head, self.dropped):
            rec.extend(v.to_bytes(4, "big"))
        rec.extend(_crc(rec).to_bytes(4, "big"))
        tmp = self.head_path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(rec)
        except OSError:
            _remove(tmp)
            raise
        os.rename(tmp, self.head_path)
        self.writes += 1
        self._saved = self.dropped
        self._dirty = False

    # ---- appending -------------------------------------------------------------------------------
    def append(self, frame):
        """Add a frame at the end. When full, the oldest frame is dropped (counted). When the
        flash is full, older frames are dropped until it fits. Returns False only if the frame
        itself could not be stored (counted as dropped); a full flash never raises."""
        n = len(frame)
        if n == 0 or n > MAX_FRAME:
            raise ValueError("frame size")
        full = self.depth >= self.capacity
        while self.depth >= self.capacity:
            self._drop_head()
        while True:
            try:
                if self._suspect:
                    _fix("fix_tail", self)
                self._write(frame)
                break
            except OSError as e:
                self._suspect = True
                if _errno(e) != _ENOSPC:
                    raise
                if not self._make_room():
                    self.dropped += 1
                    self._dirty = True
                    self.sync()
                    return False
        if full:
            self.sync()
        return True

    def shed(self):
        """Flash is full elsewhere: give up the oldest frames (counted). False if empty."""
        if self._make_room():
            self.sync()
            return True
        return False

    def _make_room(self):
        return _fix("make_room", self)

    def _write(self, frame):
        n = len(frame)
        entry = bytearray(_EHDR + n)
        entry[0] = n >> 8
        entry[1] = n & 0xFF
        entry[_EHDR:] = frame
        entry[2:_EHDR] = _crc(frame, _crc(entry[:2])).to_bytes(4, "big")
        if self._exists:
            with open(self.path, "ab") as f:
                f.write(entry)
        else:
            with open(self.path, "wb") as f:
                f.write(b"AOB\x01" + self._gen.to_bytes(4, "big"))
                f.write(entry)
            self._exists = True
            self._head = self._end = HDR
        self._end += len(entry)
        self.depth += 1
        self.writes += 1
