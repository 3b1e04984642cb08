# sys as on a board: the VM's own sys, except stdin, which reads the board's serial port.
# (This VM's sys.stdin raises EIO: in a browser nothing types.) Reads block until the bytes
# arrive, as shared/runtime/sys_stdio_mphal.c does on the esp32 and rp2 ports.
import sys as _s

import _board as _b

for _k in dir(_s):
    if not _k.startswith("__"):
        globals()[_k] = getattr(_s, _k)
del _k


def _rx(n):
    # Up to n bytes of the port's input (at least one; waits for it).
    return bytes.fromhex(_b.io({"q": "io", "op": "in", "n": n, "now": [_b.ms, _b.us]}))


class _Stdin:
    _io_id = "in"  # what select.poll asks the host about

    def __init__(self, text):
        self._text = text
        self._held = b""
        if text:
            self.buffer = _Stdin(False)

    def _take(self, n):
        while len(self._held) < n:
            self._held += _rx(n - len(self._held))
        out, self._held = self._held[:n], self._held[n:]
        return out

    def read(self, n=-1):
        if n is None or n < 0:
            # Until end of input: a serial port never ends, as on a board.
            out = b""
            while True:
                out += self._take(1)
        b = self._take(n)
        return b.decode() if self._text else b

    def readinto(self, buf, n=None):
        if n is None:
            n = len(buf)
        b = self._take(n)
        buf[:n] = b
        return n

    def readline(self):
        out = b""
        while not out.endswith(b"\n"):
            out += self._take(1)
        return out.decode() if self._text else out

    def ioctl(self, req, arg):
        return 0

    def fileno(self):
        return 0


stdin = _Stdin(True)


_last_nl = b""


def _input(prompt=None):
    # builtins.input reads the C-level stdin; on a board that is the serial port, with echo
    # and line editing (shared/readline/readline.c): echo what is typed, end at CR or LF, and
    # take CR LF (or LF CR) as one newline (process_nl()).
    global _last_nl
    if prompt:
        _s.stdout.write(prompt)
    line = bytearray()
    while True:
        c = stdin.buffer._take(1)
        if c in (b"\r", b"\n"):
            if not _last_nl or _last_nl == c:
                _last_nl = c
                _s.stdout.write("\r\n")
                return line.decode()
            _last_nl = b""
            continue
        _last_nl = b""
        if c in (b"\x08", b"\x7f"):
            if line:
                line.pop()
                _s.stdout.write("\x08 \x08")
            continue
        if c == b"\x04" and not line:
            raise EOFError
        line += c
        _s.stdout.buffer.write(c)


import builtins  # noqa: E402

builtins.input = _input
