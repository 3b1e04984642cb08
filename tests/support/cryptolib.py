"""CPython stand-in for MicroPython's ``cryptolib`` as built for esp32 and rp2.

Same API: ``aes(key, mode[, IV])`` with ``encrypt(in_buf[, out_buf])`` and
``decrypt(in_buf[, out_buf])``; modes 1 (ECB) and 2 (CBC). Counter mode (6) is compiled out on
the boards, so it raises here too. Like the real module, an object is locked to the direction of
its first operation, buffers must be a multiple of 16 bytes, and ``out_buf`` may alias
``in_buf`` (in-place). Backed by the ``cryptography`` package.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MODE_ECB = 1
MODE_CBC = 2


class aes:
    def __init__(self, key: Any, mode: int, IV: Any = None, /) -> None:
        key = bytes(key)
        if len(key) not in (16, 32):
            raise ValueError("key")
        if mode == MODE_ECB:
            m: modes.Mode = modes.ECB()
        elif mode == MODE_CBC:
            iv = bytes(16) if IV is None else bytes(IV)
            if len(iv) != 16:
                raise ValueError("IV")
            m = modes.CBC(iv)
        else:
            # MODE_CTR (6) is not compiled into the esp32 / rp2 firmware.
            raise ValueError("mode")
        self._cipher = Cipher(algorithms.AES(key), m)
        self._ctx: Any = None
        self._dir = 0

    def _run(self, direction: int, in_buf: Any, out_buf: Any) -> Any:
        if self._dir == 0:
            self._dir = direction
            c = self._cipher
            self._ctx = c.encryptor() if direction == 1 else c.decryptor()
        elif self._dir != direction:
            raise ValueError("can't encrypt & decrypt")
        data = bytes(in_buf)
        if len(data) % 16:
            raise ValueError("blksize % 16")
        result = self._ctx.update(data)
        if out_buf is None:
            return result
        if len(out_buf) != len(data):
            raise ValueError("output too small")
        memoryview(out_buf).cast("B")[:] = result
        return out_buf

    def encrypt(self, in_buf: Any, out_buf: Any = None, /) -> Any:
        return self._run(1, in_buf, out_buf)

    def decrypt(self, in_buf: Any, out_buf: Any = None, /) -> Any:
        return self._run(2, in_buf, out_buf)
