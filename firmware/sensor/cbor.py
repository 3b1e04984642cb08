"""Minimal deterministic CBOR (RFC 8949) for the device.

Encoder: unsigned and negative ints (up to 64 bits), bytes, text, arrays (list/tuple), maps
with int (or text) keys, None, True, False. It appends to a caller's bytearray and always uses
the core deterministic encoding (section 4.2.1): shortest-form heads, definite lengths, map
keys sorted by their encoded bytes (for int keys: 0, 1, 2, ..., then -1, -2, ...). Map order
never depends on dict order, which MicroPython does not keep.

Decoder: the same types back, strictly: definite lengths only, shortest-form heads only, no
tags, no floats, no duplicate map keys, nesting limited. Anything else raises ValueError.
Byte strings decode to bytes, maps to dicts, arrays to lists.
"""

from micropython import const

_MAX_DEPTH = const(8)


def head(buf, major, n):
    """Append a CBOR head (major type, argument n) in shortest form."""
    m = major << 5
    if n < 24:
        buf.append(m | n)
    elif n < 0x100:
        buf.append(m | 24)
        buf.append(n)
    elif n < 0x10000:
        buf.append(m | 25)
        buf.extend(n.to_bytes(2, "big"))
    elif n < 0x100000000:
        buf.append(m | 26)
        buf.extend(n.to_bytes(4, "big"))
    elif n < 0x10000000000000000:
        buf.append(m | 27)
        buf.extend(n.to_bytes(8, "big"))
    else:
        raise ValueError("int too large")


def enc(buf, obj):
    """Append the encoding of obj to bytearray buf."""
    if obj is None:
        buf.append(0xF6)
    elif obj is True:
        buf.append(0xF5)
    elif obj is False:
        buf.append(0xF4)
    elif isinstance(obj, int):
        if obj >= 0:
            head(buf, 0, obj)
        else:
            head(buf, 1, -1 - obj)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        head(buf, 2, len(obj))
        buf.extend(obj)
    elif isinstance(obj, str):
        b = obj.encode("utf-8")
        head(buf, 3, len(b))
        buf.extend(b)
    elif isinstance(obj, (list, tuple)):
        head(buf, 4, len(obj))
        for x in obj:
            enc(buf, x)
    elif isinstance(obj, dict):
        items = []
        for k in obj:
            if not isinstance(k, (int, str)) or k is True or k is False:
                raise TypeError("map key")
            kb = bytearray()
            enc(kb, k)
            items.append((bytes(kb), k))
        items.sort()
        head(buf, 5, len(items))
        for kb, k in items:
            buf.extend(kb)
            enc(buf, obj[k])
    else:
        raise TypeError("cbor type")


def dumps(obj):
    buf = bytearray()
    enc(buf, obj)
    return bytes(buf)


def _arg(mv, pos, ai):
    # Returns (argument, new position); rejects non-shortest and indefinite forms.
    if ai < 24:
        return ai, pos
    if ai == 24:
        n = 1
    elif ai == 25:
        n = 2
    elif ai == 26:
        n = 4
    elif ai == 27:
        n = 8
    else:
        raise ValueError("indefinite or reserved")
    end = pos + n
    if end > len(mv):
        raise ValueError("truncated")
    v = int.from_bytes(bytes(mv[pos:end]), "big")
    if v < (24 if n == 1 else 1 << (4 * n)):
        raise ValueError("non-minimal")
    return v, end


def decode(buf, pos=0):
    """Decode one item of buf at pos; returns (item, next position)."""
    return _dec(memoryview(buf), pos, 0)


def _dec(mv, pos, depth):
    if depth > _MAX_DEPTH:
        raise ValueError("too deep")
    if pos >= len(mv):
        raise ValueError("truncated")
    ib = mv[pos]
    major = ib >> 5
    ai = ib & 31
    pos += 1
    if major == 7:
        if ai == 20:
            return False, pos
        if ai == 21:
            return True, pos
        if ai == 22:
            return None, pos
        raise ValueError("simple or float")
    if major == 6:
        raise ValueError("tag")
    n, pos = _arg(mv, pos, ai)
    if major == 0:
        return n, pos
    if major == 1:
        return -1 - n, pos
    if major == 2 or major == 3:
        end = pos + n
        if end > len(mv):
            raise ValueError("truncated")
        b = bytes(mv[pos:end])
        if major == 3:
            b = str(b, "utf-8")
        return b, end
    if n > len(mv) - pos:
        raise ValueError("truncated")
    depth += 1
    if major == 4:
        out = []
        for _ in range(n):
            x, pos = _dec(mv, pos, depth)
            out.append(x)
        return out, pos
    out = {}
    for _ in range(n):
        k, pos = _dec(mv, pos, depth)
        if not isinstance(k, (int, str)) or k is True or k is False or k in out:
            raise ValueError("map key")
        out[k], pos = _dec(mv, pos, depth)
    return out, pos


def loads(buf):
    """Decode exactly one item that fills buf."""
    obj, pos = decode(buf)
    if pos != len(buf):
        raise ValueError("trailing bytes")
    return obj
