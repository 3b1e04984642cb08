# cryptolib as on esp32 and rp2 builds: AES in ECB and CBC modes only (CTR is compiled out).
# The block cipher itself is the host's (Node's crypto), so it is a real AES.
import _emu

MODE_ECB = 1
MODE_CBC = 2


class aes:
    def __init__(self, key, mode, IV=None):
        if len(key) not in (16, 32):
            raise ValueError("key")
        if mode not in (MODE_ECB, MODE_CBC):
            raise ValueError("mode")
        self._key = bytes(key)
        self._mode = mode
        self._iv = bytes(IV) if IV is not None else bytes(16)
        if mode == MODE_CBC and len(self._iv) != 16:
            raise ValueError("IV")
        self._dir = 0

    def _run(self, in_buf, out_buf, encrypt):
        if len(in_buf) % 16:
            raise ValueError("blksize % 16")
        d = 1 if encrypt else 2
        if self._dir and self._dir != d:
            raise OSError(1)  # "can't encrypt & decrypt", as the boards refuse it
        self._dir = d
        if self._mode == MODE_ECB:
            # Hex strings cross into JS by value; bytes would become proxies that pin Python
            # objects until the JS garbage collector runs (a leak in a long run).
            res = bytes.fromhex(_emu.aes_ecb(self._key.hex(), bytes(in_buf).hex(), encrypt))
        else:
            data = bytes(in_buf)
            res = bytes.fromhex(_emu.aes_cbc(self._key.hex(), self._iv.hex(), data.hex(), encrypt))
            if len(data):
                self._iv = res[-16:] if encrypt else data[-16:]
        if out_buf is None:
            return res
        out_buf[: len(res)] = res
        return None

    def encrypt(self, in_buf, out_buf=None):
        return self._run(in_buf, out_buf, True)

    def decrypt(self, in_buf, out_buf=None):
        return self._run(in_buf, out_buf, False)
