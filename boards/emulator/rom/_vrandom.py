# random, seeded from the board's generator at boot so an emulated run is reproducible.
import random as _r

import _board as _b

for _k in dir(_r):
    if not _k.startswith("__"):
        globals()[_k] = getattr(_r, _k)
del _k
_r.seed(int.from_bytes(_b.rng_bytes(4), "big"))
