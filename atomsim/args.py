"""argparse types shared by the subcommands: counts checked before any work starts."""
from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer of at least 1 (`--workers`, `--samples`, `--frames`, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_ints(text: str) -> list[int]:
    """A comma-separated list of integers of at least 1 (`--threads 1,2`)."""
    values = [positive_int(x.strip()) for x in text.split(",") if x.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list like 1,2, got {text!r}")
    return values
