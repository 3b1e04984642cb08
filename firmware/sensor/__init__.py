# The sensor firmware (docs/architecture.md).
import sys


def forget(*names):
    """Drop modules of this package from RAM (sys.modules and the package), so that their code
    can be collected: code loaded from flash lives in RAM, and a module needed only at boot or
    on a rare path need not stay. Whoever still holds its objects keeps just those."""
    pkg = sys.modules.get("sensor")
    for n in names:
        sys.modules.pop("sensor." + n, None)
        if pkg is not None and hasattr(pkg, n):
            delattr(pkg, n)
