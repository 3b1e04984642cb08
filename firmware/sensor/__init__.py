# The sensor firmware (docs/architecture.md).
import sys


def forget(*names):
    """Drop modules of this package from RAM (sys.modules and the package), so that their code
    can be collected: code loaded from flash lives in RAM, and a module needed only at boot or
    on a rare path need not stay. Whoever still holds its objects keeps just those.

    The module's namespace is emptied too: the collector is conservative, and one stale or
    false reference to a forgotten module object kept all its code alive (18 KB of the boot
    modules, in some heap layouts: docs/emulator.md). Only modules whose functions nobody
    calls again may be forgotten."""
    pkg = sys.modules.get("sensor")
    for n in names:
        mod = sys.modules.pop("sensor." + n, None)
        if pkg is not None and hasattr(pkg, n):
            delattr(pkg, n)
        if mod is not None:
            mod.__dict__.clear()
