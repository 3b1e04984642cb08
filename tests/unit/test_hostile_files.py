"""Hostile files are user mistakes: every JSON and TOML the tools read goes through one loader
(atsource.safeload) with depth, size, integer and Unicode limits; each case is one line, exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from atsource import policy as pol
from atsource import safeload
from atsource.cli import main
from atsource.emulator.scenario import ScenarioError, load_scenario
from atsource.errors import UserError
from click.testing import CliRunner, Result

DEFAULT_TEXT = pol.DEFAULT.read_text(encoding="utf-8")


def _one_line_exit_2(r: Result, *needles: str) -> None:
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert isinstance(r.exception, SystemExit)  # not a RecursionError/ValueError...
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("atsource: error: "), r.output
    for n in needles:
        assert n in lines[0]


def _policy_with(name_json: str) -> str:
    """The default policy with its name replaced by raw JSON text (escapes kept as written)."""
    obj = json.loads(DEFAULT_TEXT)
    obj["name"] = "@@NAME@@"
    return json.dumps(obj).replace('"@@NAME@@"', name_json)


HOSTILE = {
    # RecursionError today: nested 5,000 deep (well under the size limit).
    "deep": ('{"a":' * 5000 + "1" + "}" * 5000, "nested deeper than 32 levels"),
    # The lab's file: 100,000 deep is 200 KB, refused by size before any parsing.
    "deep100k": ("[" * 100_000 + "]" * 100_000, "too large for a policy file"),
    # ValueError today: Python refuses to convert a 5,000-digit integer.
    "bigint": (DEFAULT_TEXT.replace('"policy": 1', '"policy": 1' + "0" * 5000), "5001 digits"),
    # Passes `policy check` today and crashes `notice` with UnicodeEncodeError.
    "surrogate": (_policy_with('"street \\ud800 sensor"'), "lone surrogate \\ud800"),
    "huge": (DEFAULT_TEXT + " " * (70 * 1024), "too large for a policy file"),
    "wide-int": (DEFAULT_TEXT.replace('"policy": 1', '"policy": 1e999'), "finite"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_policy_check_and_notice_refuse_hostile_policies(tmp_path: Path, case: str) -> None:
    text, needle = HOSTILE[case]
    f = tmp_path / f"{case}.json"
    f.write_text(text, encoding="utf-8")
    _one_line_exit_2(CliRunner().invoke(main, ["policy", "check", str(f)]), str(f), needle)
    r = CliRunner().invoke(main, ["notice", str(f), "--out", str(tmp_path / "n")])
    _one_line_exit_2(r, needle)
    assert not (tmp_path / "n").exists()


@pytest.mark.parametrize("case", ["deep", "bigint"])
def test_provision_refuses_a_hostile_config_before_touching_a_board(
    tmp_path: Path, case: str
) -> None:
    text = {
        "deep": '{"wifi":' * 5000 + "{}" + "}" * 5000,
        "bigint": '{"counter_reserve": ' + "9" * 5000 + "}",
    }[case]
    f = tmp_path / "site.json"
    f.write_text(text)
    r = CliRunner().invoke(
        main,
        ["provision", "--port", str(tmp_path / "no-port"), "--site", "x", "--config", str(f)],
        env={"ATSOURCE_REGISTRY": str(tmp_path / "reg.db"), "ATSOURCE_REGISTRY_KEY": None},
    )
    _one_line_exit_2(r, str(f))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("a = " + "[" * 5000 + "]" * 5000, "nested deeper than 32 levels"),
        ("seed = " + "1" * 5000, "too many digits"),
        ("seed = 99999999999999999999", "out of range"),
        ('name = "x"\n' + "#" * (1 << 20), "too large for a scenario file"),
    ],
)
def test_emulate_refuses_a_hostile_scenario(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "s.toml"
    f.write_text(text)
    with pytest.raises(ScenarioError, match=needle):
        load_scenario(f)
    r = CliRunner().invoke(main, ["emulate", "pico-w", "--scenario", str(f), "--quiet"])
    _one_line_exit_2(r, needle)


def test_a_utf8_bom_is_not_an_error(tmp_path: Path) -> None:
    f = tmp_path / "bom.json"
    f.write_bytes(b"\xef\xbb\xbf" + DEFAULT_TEXT.encode())
    assert pol.policy_hash(pol.load_policy(f)) == pol.policy_hash(pol.load_policy(pol.DEFAULT))


def test_check_tree_walks_keys_and_values_without_recursing() -> None:
    safeload.check_tree({"a": [1, "b", {"c": 2.5}]}, "x")
    with pytest.raises(UserError, match=r"x: a\[1\]: not valid Unicode"):
        safeload.check_tree({"a": [1, "\udc80"]}, "x")
    with pytest.raises(UserError, match="x: not valid Unicode"):
        safeload.check_tree({"\ud800": 1}, "x")
    with pytest.raises(UserError, match="out of range"):
        safeload.check_tree([1 << 63], "x")
    deep: list[object] = []
    node = deep
    for _ in range(100_000):  # built in memory: only the iterative walk can look at it
        node.append([])
        node = node[0]  # type: ignore[assignment]
    with pytest.raises(UserError, match="nested deeper"):
        safeload.check_tree(deep, "x")


def test_validate_itself_refuses_a_lone_surrogate() -> None:
    obj = json.loads(DEFAULT_TEXT)
    obj["purpose"] = "counting \ud83d people"
    assert any("lone surrogate" in r for r in pol.validate(obj))
