"""KEY=VALUE parameter strings (the CLI's --set / --param) parsed into a dict.

Values are read as JSON where they parse ("0.5" -> 0.5, "[1,2]" -> [1, 2], "true" -> True) and
kept as plain strings otherwise ("polar" -> "polar").
"""
from __future__ import annotations

import json
from typing import Any

from .errors import GapkitError


def parse_key_values(items: list[str], flag: str = "--set", identifier_keys: bool = False) -> dict[str, Any]:
    """["lam=0.5", "init=polar"] -> {"lam": 0.5, "init": "polar"}; later keys win.

    `identifier_keys` requires keys that are Python identifiers (dotted paths allowed), for
    parameters that become keyword arguments.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        ok = bool(sep and key) and (not identifier_keys or all(k.isidentifier() for k in key.split(".")))
        if not ok:
            what = "KEY=VALUE with a Python-identifier key" if identifier_keys else "KEY=VALUE"
            raise GapkitError(f"{flag} expects {what}, got '{item}'")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out
