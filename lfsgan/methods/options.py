"""Method options: merge a config's method entry with a method's defaults, rejecting unknown keys."""

from __future__ import annotations

from typing import Any, Iterable


def resolve_options(method: str, options: dict[str, Any] | None, defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` updated by ``options``; an unknown key is an error naming the allowed ones."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(
            f"method '{method}': unknown option(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(defaults))} (fix the method's entry in the config)"
        )
    return {**defaults, **options}


def check_choice(method: str, key: str, value: Any, choices: Iterable[Any]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"method '{method}': option '{key}' must be one of {choices}, got {value!r}")


def check_number(method: str, key: str, value: Any, low: float | None = None, high: float | None = None,
                 integer: bool = False) -> None:
    """``low <= value <= high`` (either bound optional); ``integer`` also demands an int."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if integer:
        ok = ok and isinstance(value, int)
    if ok and low is not None:
        ok = value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        kind = "an integer" if integer else "a number"
        bounds = f" in [{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise ValueError(f"method '{method}': option '{key}' must be {kind}{bounds}, got {value!r}")


def check_bool(method: str, key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"method '{method}': option '{key}' must be true or false, got {value!r}")
