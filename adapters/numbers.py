"""How a system holds JSON numbers, so the ledger records and compares what it will store.

``json`` (the default) keeps numbers exactly as JSON writes them: integers of any size, and a
float stays a float (``90.0`` is not ``90``). ``javascript`` is a server that holds every number
as an IEEE double and writes it back with JavaScript's ``JSON.stringify`` (json-server, most
Node.js APIs): ``90.0`` comes back as ``90``, ``-0.0`` as ``0``, and an integer a double cannot
hold exactly (``9007199254740993``) comes back rounded.
"""

from __future__ import annotations

from typing import Any, Literal

NumberModel = Literal["json", "javascript"]
NUMBER_MODELS: tuple[NumberModel, ...] = ("json", "javascript")
_JS_EXPONENT_FROM = 1e21  # JSON.stringify writes integral doubles below this as plain digits


def held(value: Any, model: NumberModel) -> Any:
    """`value` as the system will hold it, converted losslessly; the same object if unchanged."""
    if model == "json":
        return value
    kind = type(value)
    if kind is float and value.is_integer() and abs(value) < _JS_EXPONENT_FROM:
        return int(value)
    if kind is list:
        items = [held(item, model) for item in value]
        same = all(new is old for new, old in zip(items, value, strict=True))
        return value if same else items
    if kind is dict:
        fields = {name: held(item, model) for name, item in value.items()}
        return value if all(fields[name] is value[name] for name in value) else fields
    return value


def not_held(value: Any, model: NumberModel, where: str = "") -> str | None:
    """Why the system cannot hold `value` exactly (naming the field), or None if it can."""
    if model == "json":
        return None
    kind = type(value)
    if kind is int and not _double_holds(value):
        return (
            f"field {where!r} holds {value}, which a JavaScript number cannot hold exactly "
            "(a double has 53 bits of precision); send it as text"
        )
    if kind is int and abs(value) >= _JS_EXPONENT_FROM:
        return (
            f"field {where!r} holds {value}, which a JavaScript server writes back as a float "
            f"({float(value)!r}); send it as text"
        )
    if kind is list:
        return next(
            (p for i, item in enumerate(value) if (p := not_held(item, model, f"{where}[{i}]"))),
            None,
        )
    if kind is dict:
        for name, item in value.items():
            problem = not_held(item, model, f"{where}.{name}" if where else name)
            if problem is not None:
                return problem
    return None


def _double_holds(number: int) -> bool:
    try:
        return float(number) == number
    except OverflowError:
        return False
