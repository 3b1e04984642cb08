# The provisioning check: seal one self-test record with the device's own identity, counter
# and sealer, and print the frame, so the host can open it with the registry's key.
# `atsource provision` runs `import sensor.selftest; sensor.selftest.run()` over the REPL.
# The frame holds no secret: it is what the device would send on its uplink.
import hashlib

from sensor import cbor, hal, identity
from sensor.catalogue import K_LENGTH, K_POLICY, K_START, K_STREAM, R_SELFTEST
from sensor.counter import Counter
from sensor.sealer import Sealer, pad

POLICY_PATH = "/policy.json"


def policy_hash4(path=POLICY_PATH):
    # First 4 bytes of the policy's SHA-256; 4 zero bytes without a policy. The host writes
    # /policy.json in canonical form, so the hash of the file bytes is the canonical hash.
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            buf = bytearray(256)
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                h.update(memoryview(buf)[:n])
    except OSError:
        return bytes(4)
    return h.digest()[:4]


def frame():
    ident = identity.load()
    if ident is None:
        raise ValueError("not provisioned")
    record = {K_START: hal.epoch(), K_LENGTH: 0, K_POLICY: policy_hash4(), K_STREAM: R_SELFTEST}
    sealer = Sealer(ident.kid, ident.key, ident.iv, Counter())
    return sealer.seal(pad(cbor.dumps(record)))


def run():
    print("selftest frame=" + frame().hex())
