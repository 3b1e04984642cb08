"""The docs show what the tools print: the default policy's ID in README and docs is the one
`atsource policy check` computes today (a change to policies/default.json must update them)."""

from __future__ import annotations

import json
import re

from atsource import paths
from atsource.cli import main
from click.testing import CliRunner

DOCS = ("README.md", "docs/host-tools.md", "docs/privacy.md")
# "policy 45f37526" (provision's summary), "policy 45f3 7526" (notice), "`45f3 7526`" (prose)
SHOWN = re.compile(
    r"policy ([0-9a-f]{8})\b|policy ([0-9a-f]{4}) ([0-9a-f]{4})\b|`([0-9a-f]{4}) ([0-9a-f]{4})`"
)


def test_docs_show_the_default_policy_id_the_tool_prints() -> None:
    r = CliRunner().invoke(
        main, ["policy", "check", str(paths.ROOT / "policies/default.json"), "--json"]
    )
    assert r.exit_code == 0, r.output
    printed = json.loads(r.stdout)["hash4"]
    seen: dict[str, str] = {}
    for name in DOCS:
        for m in SHOWN.finditer((paths.ROOT / name).read_text()):
            if "1a2b3c4d" in m.group(0):  # docs/privacy.md's made-up example of a refusal
                continue
            seen[f"{name}: {m.group(0)}"] = "".join(g for g in m.groups() if g)
    assert len(seen) >= 4, seen
    assert {where: h for where, h in seen.items() if h != printed} == {}
