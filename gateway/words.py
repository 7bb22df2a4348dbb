"""Spans of time in words for people: how long a link or token lives, a wait."""

from __future__ import annotations

import math


def lifetime_words(seconds: int) -> str:
    """A lifetime in words: "90 days", "6 hours", "1 minute"."""
    for unit, size in (("day", 24 * 3600), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    if seconds >= 3600:
        hours = round(seconds / 3600, 1)
        return f"{hours:g} hours"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def wait_words(seconds: int) -> str:
    """A wait in words: "1 second", "40 seconds", "15 minutes"."""
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
