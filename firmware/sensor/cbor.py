"""Minimal deterministic CBOR (RFC 8949) for the device.

Encoder: unsigned and negative ints (up to 64 bits), bytes, text, arrays (list/tuple), maps
with int (or text) keys, None, True, False. It appends to a caller's bytearray and always uses
the core deterministic encoding (section 4.2.1): shortest-form heads, definite lengths, map
keys sorted by their encoded bytes (for int keys: 0, 1, 2, ..., then -1, -2, ...). Map order
never depends on dict order, which MicroPython does not keep.

No decoder: the device never reads CBOR, and code loaded from flash lives in RAM. The
receiver parses frames with its own strict parser (host_tools/atsource/frame.py).
"""


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
