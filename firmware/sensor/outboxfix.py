# The outbox's rare paths (sensor/outbox.py): rebuilding its state from flash at boot or after
# damage, cutting a torn tail, compacting the log, making room on a full flash. Kept apart so
# that RAM holds them only while they run: the outbox loads this module when it needs it and
# forgets it after (code loaded from flash lives in RAM). docs/uplink.md has the crash analysis.
import os

from micropython import const

from sensor.outbox import _HEAD_MAGIC, HDR, _crc, _errno, _remove, _u32

_ENOSPC = const(28)
_CHUNK = const(256)


def head_record(ob):
    try:
        with open(ob.head_path, "rb") as f:
            d = f.read(32)
    except OSError:
        return None
    if len(d) != 20 or d[:4] != _HEAD_MAGIC or _crc(d[:16]) != _u32(d, 16):
        return None
    return _u32(d, 4), _u32(d, 8), _u32(d, 12)


def recover(ob):
    # Rebuild the state from flash (at open): the valid prefix of the log, the head, the
    # depth; a torn tail is cut off.
    rec = head_record(ob)
    ob.dropped = rec[2] if rec else 0
    ob._saved = ob.dropped  # the total in the head record on flash
    ob._dirty = False
    ob._suspect = False
    gen = -1
    head = off = size = HDR
    depth = 0
    found = False
    try:
        f = open(ob.path, "rb")
    except OSError:
        f = None
    if f is not None:
        try:
            h = f.read(HDR)
            if len(h) == HDR and h[:4] == b"AOB\x01":
                gen = _u32(h, 4)
                head = rec[1] if rec and rec[0] == gen else HDR
                while True:
                    if off == head:
                        found = True
                    n = ob._entry(f, off)
                    if not n:
                        break
                    if found:
                        depth += 1
                    off += n
                f.seek(0, 2)
                size = f.tell()
        finally:
            f.close()
    if gen < 0:
        # No log, or one whose header never became durable: start a new generation.
        if f is not None:
            _remove(ob.path)
        ob._gen = (rec[0] + 1) & 0xFFFFFFFF if rec else 0
        ob._head = ob._end = HDR
        ob.depth = 0
        ob._exists = False
        return
    if not found:
        # A head that is no entry boundary of this log: deliver all again (duplicates are
        # rejected by the receiver as replays; a lost frame could not be recovered).
        depth = 0
        head = o = HDR
        with open(ob.path, "rb") as f:
            while o < off:
                o += ob._entry(f, o)
                depth += 1
    ob._gen = gen
    ob._exists = True
    ob._head = head
    ob._end = off
    ob.depth = depth
    if size > off:
        truncate(ob, off)


def fix_tail(ob):
    # After a failed write: cut whatever part of an entry reached the file.
    if ob._exists:
        try:
            size = os.stat(ob.path)[6]
        except OSError:
            size = 0
        if size > ob._end:
            truncate(ob, ob._end)
    else:
        _remove(ob.path)
    ob._suspect = False


def truncate(ob, end):
    # Cut a torn tail: copy the valid part and rename it over the log (MicroPython files
    # have no truncate()).
    copy(ob, 0, end, None)
    ob._end = end


def copy(ob, start, end, header):
    # Write [start, end) of the log (after a new header, if given) to the temporary file
    # and rename it over the log.
    mv = ob._mv
    try:
        with open(ob.path, "rb") as src, open(ob._tmp, "wb") as dst:
            if header is not None:
                dst.write(header)
            src.seek(start)
            left = end - start
            while left > 0:
                n = src.readinto(mv[: min(left, _CHUNK)])
                if not n:
                    raise OSError(5)
                dst.write(mv[:n])
                left -= n
    except OSError:
        _remove(ob._tmp)
        raise
    os.rename(ob._tmp, ob.path)
    ob.writes += 1


def compact(ob):
    # Rewrite the live entries as a new generation; the old head record names the old
    # generation, so a cut before the new one is written reads the new log from its start.
    gen = (ob._gen + 1) & 0xFFFFFFFF
    copy(ob, ob._head, ob._end, b"AOB\x01" + gen.to_bytes(4, "big"))
    ob._gen = gen
    ob._end = HDR + ob._end - ob._head
    ob._head = HDR
    ob._suspect = False
    ob._dirty = True
    ob._write_head()


def make_room(ob):
    # Drop the oldest eighth of the backlog (at least one frame) and rewrite the log
    # without it (which also cuts a torn tail). False when there is nothing to drop.
    if not ob.depth:
        if ob._exists:
            ob._drain()  # only a torn tail was left: free its blocks
        return False
    k = max(1, ob.depth // 8)
    while k and ob.depth:
        ob._drop_head()
        k -= 1
    if ob._exists:
        try:
            compact(ob)
        except OSError as e:
            if _errno(e) != _ENOSPC:
                raise
            # Not even room for the rewrite: give up the whole backlog.
            while ob.depth:
                ob._drop_head()
    return True
