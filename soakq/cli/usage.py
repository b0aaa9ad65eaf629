"""The option parser's errors in plain words: one line naming the flag or argument as the user
wrote it, what was given and what is allowed (no usage block, no validation-library wording).

The line is built from the exception's fields (its parameter: options, type, choices, range;
the value given) rather than from its text. Works with click's exceptions and with the copies
that newer typer versions vendor (same class names, same fields).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum
from typing import Any


def _is(exc: BaseException, name: str) -> bool:
    """``exc`` is (a subclass of) click's or typer's exception class called ``name``."""
    return any(cls.__name__ == name for cls in type(exc).__mro__)


def command_path(exc: BaseException, argv: Sequence[str]) -> str:
    """``soakq submit``: from the exception's context, else from the command line."""
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and getattr(ctx, "command_path", None):
        return str(ctx.command_path)
    if argv and not argv[0].startswith("-"):
        return f"soakq {argv[0]}"
    return "soakq"


def _opts(param: Any) -> list[str]:
    return [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]


def param_name(param: Any, argv: Sequence[str] = ()) -> str:
    """An option as the user typed it (``-n`` or ``--name``), else its long form; an argument
    by its metavar (``RUN_ID``)."""
    if getattr(param, "param_type_name", "") == "argument":
        return str(getattr(param, "metavar", None) or param.name).upper()
    opts = _opts(param)
    for token in reversed(argv):
        for opt in opts:
            if token == opt or token.startswith(f"{opt}="):
                return opt
    longs = [o for o in opts if o.startswith("--")]
    return (longs or opts or [str(param.name)])[0]


def given_value(exc: BaseException, param: Any, argv: Sequence[str]) -> str | None:
    """The text the user gave ``param``: from the validation error under the exception when
    there is one, else the value after the option's last occurrence on the command line."""
    errors = getattr(exc.__cause__, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
        except Exception:  # noqa: BLE001 - no structured error: fall back to the command line
            first = {}
        if isinstance(first.get("input"), str):
            return str(first["input"])
    if getattr(param, "param_type_name", "") == "argument":
        return None
    opts = _opts(param)
    value: str | None = None
    for i, token in enumerate(argv):
        for opt in opts:
            if token == opt and i + 1 < len(argv):
                value = argv[i + 1]
            elif token.startswith(f"{opt}="):
                value = token[len(opt) + 1 :]
    return value


def _choice_text(choice: Any) -> str:
    return str(choice.value if isinstance(choice, Enum) else choice)


def param_rules(param: Any) -> tuple[str | None, tuple[str, ...], float | None, float | None]:
    """(kind, choices, min, max) of a parameter: kind is "int", "float" or None."""
    desc = getattr(param, "type_descriptor", None)
    if desc is not None:  # typer with its own coercion
        choices = tuple(_choice_text(c) for c in (desc.choices or ()))
        ann = desc.annotation
        kind = {int: "int", float: "float"}.get(ann) if isinstance(ann, type) else None
        info = desc.parameter_info
        return kind, choices, info.min, info.max
    ptype = getattr(param, "type", None)  # click's parameter types
    choices = tuple(_choice_text(c) for c in getattr(ptype, "choices", None) or ())
    name = str(getattr(ptype, "name", ""))
    kind = "int" if name.startswith("integer") else "float" if name.startswith("float") else None
    return kind, choices, getattr(ptype, "min", None), getattr(ptype, "max", None)


def _num(x: float) -> str:
    return f"{x:g}"


def value_problem(param: Any, value: str | None) -> str | None:
    """What is wrong with ``value`` for ``param`` in plain words, or None when the parameter's
    rules do not say (the caller then falls back to the parser's own words)."""
    kind, choices, lo, hi = param_rules(param)
    shown = "(nothing)" if value is None else repr(value)
    if choices:
        return f"{shown} is not one of {', '.join(choices)}"
    if kind is None or value is None:
        return None
    try:
        number = int(value) if kind == "int" else float(value)
    except ValueError:
        return f"{shown} is not a {'whole number' if kind == 'int' else 'number'}"
    if isinstance(number, float) and math.isnan(number):
        return f"{shown} is not a number"
    if lo is not None and hi is not None and not lo <= number <= hi:
        return f"{shown} is out of range: use {_num(lo)} to {_num(hi)}"
    if lo is not None and number < lo:
        return f"{shown} is too small: the minimum is {_num(lo)}"
    if hi is not None and number > hi:
        return f"{shown} is too large: the maximum is {_num(hi)}"
    return None


def _clause(text: str) -> str:
    """A sentence as a clause: one line, no final period, a capital only in a name (``PATH``)."""
    text = " ".join(text.split()).rstrip(".")
    first = text.split(" ", 1)[0]
    return text if len(first) > 1 and first[:2].isupper() else text[:1].lower() + text[1:]


def _help_summary(param: Any) -> str:
    """A parameter's help text without its ``[default: ...]`` tail."""
    return _clause(str(getattr(param, "help", None) or "").split("[default:")[0])


def usage_line(exc: BaseException, argv: Sequence[str]) -> str:
    """One line (without ``error: ``) for a parser error; ``argv`` is ``sys.argv[1:]``."""
    cmd = command_path(exc, argv)
    see = f"(see {cmd} --help)"
    param = getattr(exc, "param", None)
    if _is(exc, "MissingParameter") and param is not None:
        what = "argument" if getattr(param, "param_type_name", "") == "argument" else "option"
        summary = _help_summary(param)
        return f"{cmd}: missing {what} {param_name(param)}" + (
            f" ({summary})" if summary else f" {see}"
        )
    if _is(exc, "BadParameter") and param is not None:
        name = param_name(param, argv)
        problem = value_problem(param, given_value(exc, param, argv))
        if problem is None:
            problem = _clause(str(getattr(exc, "message", "") or exc))
        return f"{name}: {problem}"
    if _is(exc, "NoSuchOption"):
        option = str(getattr(exc, "option_name", "") or "")
        near = sorted(getattr(exc, "possibilities", None) or ())
        hint = f"; did you mean {' or '.join(near)}?" if near else ""
        return f"no such option {option}{hint} {see}"
    if _is(exc, "BadOptionUsage") and getattr(exc, "option_name", None):
        option = str(exc.option_name)  # type: ignore[attr-defined]
        message = str(getattr(exc, "message", ""))
        if "requires" in message:
            return f"{option}: needs a value {see}"
        if "does not take" in message:
            return f"{option}: takes no value {see}"
        return f"{option}: {_clause(str(getattr(exc, 'message', exc)))} {see}"
    fmt = getattr(exc, "format_message", None)
    message = str(fmt() if callable(fmt) else exc)
    return f"{cmd}: {_clause(message)} {see}"
