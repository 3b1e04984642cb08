"""The one wrapper over mpremote's transport (pinned: mpremote 1.29.0) that every host tool
uses to talk to a board: a real one on USB or an emulated one on a pty or a ``socket://`` URL.

What it adds to mpremote: timeouts that hold on a pty (mpremote reads a pty with no timeout),
retries while a board is booting, one-line ``DeviceError`` messages (no such port, port busy,
board not answering, not a MicroPython board, no space on the device), file transfer in base64
chunks (about twice mpremote's pace when the board lacks raw-paste), atomic writes (``X.new``
then rename), and SHA-256 of many files in one round trip.

Nothing here prints, and no file content or secret ever goes into an exception message.
"""

from __future__ import annotations

import ast
import base64
import binascii
import contextlib
import hashlib
import math
import os
import re
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import serial
from mpremote.transport import TransportError, TransportExecError
from mpremote.transport_serial import SerialTransport
from serial.tools import list_ports

from .boards import Board, board_names, load_board
from .boardtime import BoardClock, clock_for
from .errors import DeviceError, UserError

MPREMOTE_VERSION = "1.29.0"
BANNER = b"raw REPL; CTRL-B to exit\r\n"
ENOENT = 2
ENOSPC = 28
# Base64 text per exec: 4 KB of text is 3 KB of data, small enough for any board's heap.
CHUNK = 3072

Progress = Callable[[int], None]  # called with bytes just transferred


@dataclass(frozen=True)
class PortInfo:
    device: str
    vid: int | None
    pid: int | None
    board: str | None  # board definition whose USB ids match (MicroPython mode)
    bootsel: bool = False  # a board waiting in its USB bootloader


def _port_board(vid: int | None, pid: int | None) -> tuple[str | None, bool]:
    if vid is None or pid is None:
        return None, False
    for name in board_names():
        for ids in load_board(name).usb_ids:
            if ids.get("vid") == vid and ids.get("pid") == pid:
                return name, ids.get("mode") == "bootsel"
    return None, False


def list_boards() -> list[PortInfo]:
    """Serial ports whose USB ids match a board definition (pyserial's list_ports)."""
    found: list[PortInfo] = []
    for p in list_ports.comports():
        name, bootsel = _port_board(p.vid, p.pid)
        if name is not None:
            found.append(PortInfo(p.device, p.vid, p.pid, name, bootsel))
    return found


def usb_board(port: str) -> str | None:
    """The board definition matching this port's USB ids, if the port is a known USB board."""
    for p in list_ports.comports():
        if p.device == port or os.path.realpath(p.device) == os.path.realpath(port):
            return _port_board(p.vid, p.pid)[0]
    return None


def check_port_exists(port: str) -> None:
    """A clear DeviceError for a device path that does not exist or is not a serial port."""
    if "://" in port:
        return
    if not os.path.exists(port):
        raise DeviceError(f"no such port: {port} (is the board plugged in? see `ls /dev/tty*`)")
    try:
        mode = os.stat(port).st_mode
    except OSError:
        return
    if not stat.S_ISCHR(mode):
        raise DeviceError(f"{port} is not a serial port")


def _open_error(port: str) -> str:
    """Why a port failed to open: mpremote reports only "failed to access", so ask pyserial."""
    try:
        s = serial.serial_for_url(port, do_not_open=True, exclusive=True, timeout=1)
        s.open()
        s.close()
    except (serial.SerialException, OSError, ValueError) as e:
        return str(e)
    return "failed to open"


# How long a lock this process itself took may stay held by a child it started (see
# Device._open): generous, since only a starved child holds it that long.
OWN_LOCK_WAIT_S = 60.0


def _is_lock_error(low: str) -> bool:
    return "lock" in low or "busy" in low or "resource temporarily" in low


def locked_by_this_process(port: str) -> bool:
    """Whether the exclusive lock on ``port`` is one this process took (``/proc/locks`` names
    the process that took a flock, not the ones that inherited it). Linux only; False
    elsewhere or when it cannot tell."""
    try:
        ino = str(os.stat(port).st_ino)
        with open("/proc/locks") as f:
            rows = f.read().splitlines()
    except OSError:
        return False
    me = str(os.getpid())
    for row in rows:
        # "1: FLOCK  ADVISORY  WRITE 4242 00:19:5 0 EOF" (a waiter's row has "->" after the id)
        f = row.split()
        if len(f) >= 6 and f[1] == "FLOCK" and f[4] == me and f[5].rsplit(":", 1)[-1] == ino:
            return True
    return False


class _Transport(SerialTransport):
    """mpremote's serial transport, waiting by the board's clock (``boardtime``): an emulated
    board is not declared dead because the machine is busy. For an emulated board it also
    skips what only a real UART needs: the raw-paste probe (the emulated port refuses it; its
    1 s read would misfire under load) and the 10 ms pause after every 256 bytes written."""

    def __init__(self, port: str, baudrate: int) -> None:
        # A read timeout makes the byte-by-byte pty reads return, so timeouts are honoured.
        super().__init__(port, baudrate=baudrate, timeout=1.0)
        self.clock: BoardClock = clock_for(port)
        self.emulated = self.clock.emulated is not None
        if self.emulated:
            self.use_raw_paste = False

    def read_until(
        self,
        min_num_bytes: int,
        ending: bytes,
        timeout: float | None = 10,
        data_consumer: Callable[[bytes], None] | None = None,
        timeout_overall: float | None = None,
    ) -> bytes:
        """mpremote's ``read_until`` (same arguments and result) on the board's clock."""
        now = self.clock.now
        data = b""
        begin_overall = begin_char = now()
        while not data.endswith(ending):
            new = self.serial.read(1) if self.is_pty or self.serial.in_waiting > 0 else b""
            if new:
                if data_consumer:
                    data_consumer(new)
                    data = new
                else:
                    data += new
                begin_char = now()
                continue
            t = now()
            if timeout is not None and t >= begin_char + timeout:
                break
            if timeout_overall is not None and t >= begin_overall + timeout_overall:
                break
            time.sleep(0.01)
        return data

    def exec_raw_no_follow(self, command: str | bytes) -> None:
        if not self.emulated:
            super().exec_raw_no_follow(command)
            return
        data = command if isinstance(command, bytes) else command.encode()
        # Limits on the whole wait, not only between bytes: a board that was reset meanwhile
        # runs its firmware and prints a line every few seconds, which would keep a per-byte
        # timeout from ever running out (the prompt never comes).
        if not self.read_until(1, b">", timeout_overall=10).endswith(b">"):
            raise TransportError("could not enter raw repl")
        self.serial.write(data + b"\x04")
        ok = self.read_until(1, b"OK", timeout=10, timeout_overall=10)
        if ok != b"OK":
            raise TransportError(f"could not exec command (response: {ok[-20:]!r})")


class Device:
    """A MicroPython board in raw-REPL mode. Use as a context manager or call ``close()``."""

    def __init__(
        self,
        port: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        soft_reset: bool = True,
        baudrate: int = 115200,
    ) -> None:
        self.port = port
        self.timeout = timeout
        check_port_exists(port)
        self._t = self._open(port, baudrate, retries)
        try:
            self._enter(soft_reset, retries)
        except BaseException:
            self._close_quietly()
            raise

    @property
    def emulated(self) -> bool:
        """An emulated board that announced its port: waits on it use board time."""
        return self._t.emulated

    # ---- connection --------------------------------------------------------------------------
    def _open(self, port: str, baudrate: int, retries: int) -> _Transport:
        last = ""
        attempt = 0
        own_lock_until = time.monotonic() + OWN_LOCK_WAIT_S
        while True:
            try:
                return _Transport(port, baudrate)
            except TransportError:
                last = _open_error(port)
            except serial.SerialException as e:
                last = str(e)
            except OSError as e:
                last = e.strerror or str(e)
            low = last.lower()
            if _is_lock_error(low):
                if time.monotonic() < own_lock_until and (
                    locked_by_this_process(port) or not _is_lock_error(_open_error(port).lower())
                ):
                    # Our own last connection, still held by a child we started meanwhile
                    # (an emulated board's VM respawned after a reset: between fork and exec
                    # it holds a copy of every descriptor, and with it the lock), or a lock
                    # gone since: try again. The child lets go when it execs; on a busy
                    # machine that can take a while. Not "busy".
                    time.sleep(0.05)
                    continue
                raise DeviceError(
                    f"port busy: {port} is open in another program (close mpremote, screen or "
                    "the serial monitor using it)"
                )
            if "no such file" in low or "could not open port" in low and "errno 2" in low:
                raise DeviceError(f"no such port: {port}")
            if "permission denied" in low:
                raise DeviceError(
                    f"permission denied on {port} (on Linux: add yourself to the dialout group)"
                )
            if "connection refused" in low:
                raise DeviceError(f"no board is serving {port} (connection refused)")
            if attempt >= retries:
                raise DeviceError(f"cannot open {port}: {last}")
            attempt += 1
            time.sleep(0.3)

    def _enter(self, soft_reset: bool, retries: int) -> None:
        """Interrupt whatever runs (Ctrl-C) and enter the raw REPL, as mpremote does."""
        heard = b""
        for attempt in range(retries + 1):
            got = self._try_enter(soft_reset)
            if got is None:
                return
            heard += got
            if attempt < retries:
                time.sleep(0.2 * (attempt + 1))
        if heard.strip(b"\r\n\x00"):
            raise DeviceError(
                f"the device on {self.port} is not a MicroPython board (it answered, but "
                "not with a raw REPL); flash MicroPython first (atsource flash)"
            )
        raise DeviceError(
            f"board not answering on {self.port} (check the cable, press reset, or "
            "close other programs using the port)"
        )

    def _try_enter(self, soft_reset: bool) -> bytes | None:
        t = self._t
        ser = t.serial
        try:
            ser.write(b"\r\x03\x03")  # Ctrl-C twice: stop a running main.py
            time.sleep(0.05)
            self._drain()
            ser.write(b"\r\x01")  # Ctrl-A: raw REPL
            # Without a soft reset the prompt '>' is left for the first exec to read.
            want = BANNER + b">" if soft_reset else BANNER
            data = t.read_until(1, want, timeout=2, timeout_overall=self.timeout)
            if not data.endswith(want):
                return data or b""
            if soft_reset:
                # Ctrl-D in the raw REPL: soft reset (boot.py only, no main.py), a clean heap.
                ser.write(b"\x04")
                data = t.read_until(1, b"soft reboot\r\n", timeout_overall=self.timeout)
                if not data.endswith(b"soft reboot\r\n"):
                    return data or b""
                data = t.read_until(1, BANNER, timeout_overall=self.timeout)
                if not data.endswith(BANNER):
                    return data or b""
            t.in_raw_repl = True
            # A helper kept in the raw REPL's globals (a soft reset clears it).
            self.exec(_HELPERS)
            return None
        except (OSError, serial.SerialException) as e:
            raise DeviceError(f"lost the connection to {self.port}: {e.__class__.__name__}") from e

    def _drain(self) -> None:
        ser: Any = self._t.serial
        with contextlib.suppress(OSError, serial.SerialException):
            n = ser.in_waiting
            while n > 0:
                ser.read(n)
                n = ser.in_waiting

    def reconnect(self, soft_reset: bool = False, retries: int = 3) -> None:
        """Enter the raw REPL again (after a reset, or a command that timed out)."""
        self._enter(soft_reset, retries)

    def _close_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self._t.close()

    def close(self) -> None:
        """Leave the raw REPL (the board goes back to its friendly REPL) and release the port."""
        with contextlib.suppress(Exception):
            if self._t.in_raw_repl:
                self._t.exit_raw_repl()
        self._close_quietly()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- code --------------------------------------------------------------------------------
    def exec(self, code: str, *, timeout: float | None = None) -> str:
        """Run code on the board; return what it printed. A Python exception on the board
        raises ``DeviceError`` naming its last line (``OSError`` keeps its errno)."""
        out, err = self._exec_raw(code, timeout)
        if err:
            raise _board_error(err.decode(errors="replace"))
        return out.decode(errors="replace")

    def _exec_raw(self, code: str, timeout: float | None) -> tuple[bytes, bytes]:
        try:
            return self._t.exec_raw(code, timeout=math.ceil(timeout or self.timeout))
        except TransportError as e:
            msg = str(e)
            raise DeviceError(
                f"board not answering on {self.port} ({msg.split('(')[0].strip() or 'timeout'})"
            ) from None
        except (OSError, serial.SerialException) as e:
            raise DeviceError(f"lost the connection to {self.port}: {e.__class__.__name__}") from e

    def eval(self, expr: str, *, timeout: float | None = None) -> Any:
        """Evaluate an expression on the board; its repr() parsed back as a Python literal."""
        out = self.exec(f"print(repr({expr}))", timeout=timeout).strip()
        try:
            return ast.literal_eval(out)
        except (ValueError, SyntaxError):
            raise DeviceError(f"unexpected answer from the board on {self.port}") from None

    # ---- facts -------------------------------------------------------------------------------
    def unique_id(self) -> bytes:
        """``machine.unique_id()``: identifies the board. Keep it out of logs (store a hash)."""
        return bytes(self.eval("__import__('machine').unique_id()"))

    def uname(self) -> dict[str, str]:
        u = self.eval("tuple(__import__('os').uname())")
        return dict(zip(("sysname", "nodename", "release", "version", "machine"), u, strict=False))

    def mpy_version(self) -> tuple[int, int]:
        """(bytecode version, sub-version) of the board's VM, from sys.implementation._mpy."""
        v = int(self.eval("getattr(__import__('sys').implementation, '_mpy', 0)"))
        return v & 0xFF, (v >> 8) & 3

    def free_bytes(self) -> int:
        s = self.eval("__import__('os').statvfs('/')")
        return int(s[0]) * int(s[3])

    def detect_board(self, info: dict[str, str] | None = None) -> Board:
        """The board definition for this device: its USB ids, then what MicroPython reports
        (``info``: its ``uname()`` when already known, e.g. from ``survey``)."""
        name = usb_board(self.port)
        if name:
            return load_board(name)
        info = info if info is not None else self.uname()
        boards = [load_board(n) for n in board_names()]
        for b in boards:
            if b.machine == info.get("machine"):
                return b
        same_port = [b for b in boards if b.port == info.get("sysname")]
        if len(same_port) == 1:
            return same_port[0]
        with contextlib.suppress(UserError, FileNotFoundError, ValueError, KeyError, TypeError):
            from .safeload import parse_json

            raw = self.read_file("/board.json").decode("utf-8")
            return load_board(parse_json(raw, "/board.json")["name"])
        raise DeviceError(
            f"cannot tell which board is on {self.port} ({info.get('machine', '?')}): "
            f"name it with --board ({', '.join(b.name for b in boards)})"
        )

    # ---- files -------------------------------------------------------------------------------
    def read_file(self, path: str) -> bytes:
        """A file's bytes. ``FileNotFoundError`` when it does not exist."""
        size = self.stat_size(path)
        if size is None:
            raise FileNotFoundError(path)
        data = bytearray()
        code = (
            "from binascii import b2a_base64 as _e\n"
            f"_f=open({path!r},'rb')\n_f.seek({{}})\nprint(_e(_f.read({CHUNK})).decode())\n"
            "_f.close()"
        )
        while len(data) < size:
            out = self.exec(code.format(len(data))).strip()
            chunk = base64.b64decode(out)
            if not chunk:
                break
            data.extend(chunk)
        return bytes(data)

    def stat_size(self, path: str) -> int | None:
        """Size of a file, or None when there is no such file (or it is a directory)."""
        r = self.eval(f"(lambda s: None if s is None or s[0] & 0x4000 else s[6])(_st({path!r}))")
        return None if r is None else int(r)

    def exists(self, path: str) -> bool:
        return self.stat_size(path) is not None

    def write_file(self, path: str, data: bytes, progress: Progress | None = None) -> None:
        """Write a file in place (creating parent directories). Prefer ``write_atomic``."""
        self._mkdirs(path)
        self.exec(f"_f=open({path!r},'wb')\nfrom binascii import a2b_base64 as _d")
        try:
            for i in range(0, len(data), CHUNK):
                part = data[i : i + CHUNK]
                self.exec(f"_f.write(_d({base64.b64encode(part)!r}))")
                if progress:
                    progress(len(part))
        finally:
            with contextlib.suppress(DeviceError):
                self.exec("_f.close()")
        if not data and progress:
            progress(0)

    def write_atomic(self, path: str, data: bytes, progress: Progress | None = None) -> None:
        """Write ``path.new`` fully, then rename it over ``path`` (LittleFS renames atomically),
        so a power cut leaves either the old file or the new one, never half of one."""
        tmp = path + ".new"
        self.write_file(tmp, data, progress)
        self.rename(tmp, path)

    def rename(self, old: str, new: str) -> None:
        self.exec(f"import os\nos.rename({old!r},{new!r})")

    def remove(self, path: str, *, missing_ok: bool = True) -> bool:
        """Remove a file; True when it existed."""
        out = self.exec(
            f"import os\ntry:\n os.remove({path!r})\n print(1)\nexcept OSError as e:\n"
            f" print(0 if e.args[0]=={ENOENT} else -e.args[0])"
        ).strip()
        if out == "1":
            return True
        if out == "0":
            if not missing_ok:
                raise FileNotFoundError(path)
            return False
        raise DeviceError(f"cannot remove {path} on the board (errno {out.lstrip('-')})")

    def _mkdirs(self, path: str) -> None:
        parts = path.strip("/").split("/")[:-1]
        if not parts:
            return
        self.exec(
            "import os\n"
            f"_p=''\nfor _s in {parts!r}:\n _p+='/'+_s\n try:\n  os.mkdir(_p)\n except OSError:\n"
            "  pass"
        )

    def list_files(self, top: str = "/") -> list[str]:
        """Every file under ``top`` (recursive), as absolute paths."""
        code = (
            "import os\n"
            "def _w(d):\n"
            " for e in os.ilistdir(d):\n"
            "  p=(d.rstrip('/')+'/'+e[0])\n"
            "  if e[1]&0x4000:\n   _w(p)\n"
            "  else:\n   print(p)\n"
            f"_w({top!r})"
        )
        return [ln.strip() for ln in self.exec(code).splitlines() if ln.strip()]

    def sha256(self, paths: Sequence[str]) -> dict[str, str | None]:
        """SHA-256 (hex) of each file on the board in one round trip; None if missing."""
        if not paths:
            return {}
        code = (
            "import hashlib\nfrom binascii import hexlify as _h\n_b=bytearray(512)\n"
            "_m=memoryview(_b)\n"
            f"for _p in {list(paths)!r}:\n"
            " try:\n  _f=open(_p,'rb')\n except OSError:\n  print('-');continue\n"
            " _s=hashlib.sha256()\n"
            " while 1:\n  _n=_f.readinto(_b)\n  if not _n:break\n  _s.update(_m[:_n])\n"
            " _f.close()\n print(_h(_s.digest()).decode())"
        )
        lines = [ln.strip() for ln in self.exec(code, timeout=self.timeout * 3).splitlines()]
        lines = [ln for ln in lines if ln]
        if len(lines) != len(paths):
            raise DeviceError(f"unexpected answer from the board on {self.port} (sha256)")
        return {p: (None if h == "-" else h) for p, h in zip(paths, lines, strict=True)}

    def survey(self, sizes: dict[str, set[int]], read: str | None = None) -> Survey:
        """What a deploy needs to know, in one round trip: the VM's bytecode version and
        ``uname``, every file on the board with its size, the SHA-256 of each file named in
        ``sizes`` whose size on the board is one of those given (a file of another size
        differs anyway), and the bytes of the small file ``read`` (None when it is missing)."""
        want = {p: tuple(sorted(n)) for p, n in sorted(sizes.items())}
        code = (
            "import os,sys,hashlib\nfrom binascii import hexlify as _h,b2a_base64 as _e\n"
            f"_z={want!r}\n_b=bytearray(512)\n_m=memoryview(_b)\n"
            "print('V',getattr(sys.implementation,'_mpy',0))\n"
            "_u=os.uname()\nprint('U\\t'+_u[0]+'\\t'+_u[4])\n"
            "def _w(d):\n"
            " for e in os.ilistdir(d):\n"
            "  p=d.rstrip('/')+'/'+e[0]\n"
            "  if e[1]&0x4000:\n   _w(p);continue\n"
            "  n=e[3] if len(e)>3 else os.stat(p)[6]\n"
            "  x='-'\n"
            "  if n in _z.get(p,()):\n"
            "   s=hashlib.sha256();f=open(p,'rb')\n"
            "   while 1:\n    k=f.readinto(_b)\n    if not k:break\n    s.update(_m[:k])\n"
            "   f.close();x=_h(s.digest()).decode()\n"
            "  print('F\\t'+p+'\\t'+str(n)+'\\t'+x)\n"
            "_w('/')\n"
        )
        if read is not None:
            code += (
                f"try:\n _f=open({read!r},'rb')\nexcept OSError:\n _f=None\n"
                "if _f:\n while 1:\n  _k=_f.read(768)\n  if not _k:break\n"
                "  print('R',_e(_k).decode().strip())\n _f.close()\n"
            )
        out = self.exec(code, timeout=self.timeout * 3)
        sv = Survey(mpy=(0, 0), sysname="", machine="", sizes={}, hashes={}, data=None)
        chunks: list[bytes] = []
        try:
            for ln in out.splitlines():
                kind, _, rest = ln.rstrip("\r").partition(" " if ln[:1] in "VR" else "\t")
                if kind == "V":
                    v = int(rest)
                    sv.mpy = (v & 0xFF, (v >> 8) & 3)
                elif kind == "U":
                    sv.sysname, sv.machine = rest.split("\t", 1)
                elif kind == "F":
                    path, size, digest = rest.rsplit("\t", 2)
                    sv.sizes[path] = int(size)
                    if digest != "-":
                        sv.hashes[path] = digest
                elif kind == "R":
                    chunks.append(base64.b64decode(rest))
        except (ValueError, binascii.Error):
            raise DeviceError(f"unexpected answer from the board on {self.port} (survey)") from None
        if read is not None and read in sv.sizes:
            sv.data = b"".join(chunks)
        return sv

    def soft_reboot(self) -> None:
        """Leave the raw REPL and soft-reset, so boot.py and main.py run (the new firmware)."""
        with contextlib.suppress(Exception):
            self._t.exit_raw_repl()
            self._t.serial.write(b"\x04")
            self._t.read_until(1, b"soft reboot\r\n", timeout_overall=self.timeout)

    def bootloader(self) -> None:
        """``machine.bootloader()``: the board leaves MicroPython for its USB bootloader (a Pico
        shows its UF2 drive). The serial port goes away, so the connection is closed."""
        with contextlib.suppress(DeviceError, TransportError, OSError, serial.SerialException):
            self._t.exec_raw_no_follow("import machine\nmachine.bootloader()")
            time.sleep(0.2)
        self._t.in_raw_repl = False
        self._close_quietly()

    def reset(self) -> None:
        """Hard reset (``machine.reset()``); the connection is closed afterwards."""
        with contextlib.suppress(DeviceError):
            self._t.exec_raw_no_follow("import machine\nmachine.reset()")
        self._close_quietly()


@dataclass
class Survey:
    """One look at a board (``Device.survey``)."""

    mpy: tuple[int, int]  # bytecode version and sub-version
    sysname: str
    machine: str
    sizes: dict[str, int]  # every file: absolute path -> size
    hashes: dict[str, str]  # SHA-256 hex of the files asked for whose size matched
    data: bytes | None  # the file asked to be read, None when missing

    @property
    def uname(self) -> dict[str, str]:
        return {"sysname": self.sysname, "machine": self.machine}


_HELPERS = "import os\ndef _st(p):\n try:\n  return os.stat(p)\n except OSError:\n  return None\n"


def _board_error(text: str) -> DeviceError:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else "error"
    m = re.match(r"OSError: \[?Errno (\d+)\]?|OSError: (\d+)", last)
    if m:
        errno_ = int(m.group(1) or m.group(2))
        if errno_ == ENOSPC:
            return DeviceError("no space left on the device's file system")
        e = DeviceError(f"the board reported {last.strip()}")
        e.errno = errno_  # type: ignore[attr-defined]
        return e
    if "ENOSPC" in last:
        return DeviceError("no space left on the device's file system")
    return DeviceError(f"the board reported {last.strip()[:200]}")


@contextlib.contextmanager
def connect(port: str, **kw: Any) -> Iterator[Device]:
    """``with connect(port) as dev:`` opens the port and enters the raw REPL."""
    dev = Device(port, **kw)
    try:
        yield dev
    finally:
        dev.close()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


__all__ = [
    "MPREMOTE_VERSION",
    "Device",
    "DeviceError",
    "PortInfo",
    "Survey",
    "TransportExecError",
    "connect",
    "list_boards",
    "sha256_hex",
    "usb_board",
]
