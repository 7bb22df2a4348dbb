"""Secrets, configuration errors and the environment readers of both services."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from pathlib import Path
from typing import Final

TRUE_WORDS: Final = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS: Final = frozenset({"0", "false", "no", "off"})


class ConfigError(Exception):
    """An unusable configuration; `problems` names each fault and its place."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


class Secret:
    """A secret string that never shows in reprs, str() or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        """The secret itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


NOT_TEXT: Final = "not UTF-8 text (write a secret as text, e.g. `openssl rand -hex 32`)"


def read_secret_file(path: str | Path) -> str:
    """The secret in a file, without surrounding whitespace (OSError if unreadable,
    also when it is not UTF-8 text: its strerror says so)."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as err:
        raise OSError(errno.EILSEQ, NOT_TEXT, str(path)) from err


class Env:
    """The variables under one prefix; each reader records what is wrong with it."""

    def __init__(self, environ: Mapping[str, str], prefix: str) -> None:
        self.prefix = prefix
        self.values = {
            key[len(prefix) :]: value
            for key, value in environ.items()
            if key.startswith(prefix)
        }
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        """Record a problem of PREFIX + key."""
        self.problems.append(f"{self.prefix}{key}: {message}")

    def text(self, key: str) -> str | None:
        """The variable's text; None when it is unset or empty."""
        return self.values.get(key) or None

    def flag(self, key: str, default: bool = False) -> bool:
        """A yes/no variable (1/0, true/false, yes/no, on/off, any case)."""
        raw = self.text(key)
        if raw is None:
            return default
        word = raw.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word not in FALSE_WORDS:
            self.problem(key, f"must be true or false, got {raw!r}")
        return False if word in FALSE_WORDS else default

    def integer(self, key: str, default: int, *, minimum: int = 1) -> int:
        """A whole number of at least `minimum` (counts, seconds, bytes, ports)."""
        raw = self.text(key)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problem(key, f"not an integer: {raw!r}")
            return default
        if value < minimum:
            self.problem(key, f"must be at least {minimum}, got {raw!r}")
            return default
        return value

    def number(
        self,
        key: str,
        default: float,
        *,
        low: float = 0.0,
        high: float | None = None,
        low_allowed: bool = False,
    ) -> float:
        """A number above `low` (or from it, if allowed) and at most `high`."""
        raw = self.text(key)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            self.problem(key, f"not a number: {raw!r}")
            return default
        too_low = not (value >= low if low_allowed else value > low)  # NaN too
        if too_low or (high is not None and value > high):
            bound = f"{'at least' if low_allowed else 'more than'} {low:g}"
            if high is not None:
                bound += f" and at most {high:g}"
            self.problem(key, f"must be {bound}, got {raw!r}")
            return default
        return value

    def secret(self, key: str) -> Secret | None:
        """A secret given as KEY itself or as the file KEY_FILE (one of them)."""
        value = self.text(key)
        path = self.text(f"{key}_FILE")
        if value is not None and path is not None:
            self.problem(f"{key}, {self.prefix}{key}_FILE", "set only one")
            return None
        if path is not None:
            try:
                value = read_secret_file(path)
            except OSError as err:
                self.problem(f"{key}_FILE", f"cannot read {path!r}: {err.strerror}")
                return None
        return None if value is None else Secret(value)
