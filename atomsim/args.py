"""argparse types and options shared by the subcommands: counts checked before any work starts,
the output options of long commands (`--no-progress`, `--verbose`), and the parser that hints at
an argument-order mistake."""
from __future__ import annotations

import argparse
import os
import sys


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


def add_output_options(p: argparse.ArgumentParser, progress: bool = True) -> None:
    """`--no-progress` (a long command's bar; it is drawn only when stderr is a terminal anyway)
    and `--verbose` (library warnings the command otherwise filters, atomsim/process.py)."""
    if progress:
        p.add_argument("--no-progress", action="store_true",
                       help="no progress bar (there is none either when stderr is not a terminal)")
    p.add_argument("--verbose", action="store_true",
                   help="also print the libraries' warnings that atomsim filters (torch deprecations)")


def show_progress(args=None, stream=None) -> bool:
    """A progress bar only on a terminal: not with --no-progress, not when stderr is redirected
    (ATOMSIM_PROGRESS=1 draws it into a redirected stderr too, as a log that wants it; =0 never)."""
    if args is not None and getattr(args, "no_progress", False):
        return False
    forced = os.environ.get("ATOMSIM_PROGRESS")
    if forced in ("0", "1"):
        return forced == "1"
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):   # no isatty, or closed
        return False


GREEDY = ("+", "*")


def order_hint(parser: argparse.ArgumentParser, argv: list[str], message: str) -> str | None:
    """When a positional is missing and an option that takes every value after it (`--videos A B`)
    swallowed values, say so: `run --videos my.mp4 SCENARIO` reads SCENARIO as a video."""
    if "the following arguments are required" not in message:
        return None
    greedy = {s: a for a in parser._actions if a.nargs in GREEDY for s in a.option_strings}
    for i, arg in enumerate(argv):
        if arg not in greedy:
            continue
        taken = []
        for value in argv[i + 1:]:
            if value.startswith("-") and len(value) > 1:
                break
            taken.append(value)
        if len(taken) > 1:
            missing = message.split(":", 1)[1].strip()
            return (f"hint: {arg} took every value after it ({' '.join(taken)}); give {missing} before {arg}, "
                    f"or end {arg}'s list with --")
    return None


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors add a hint for an argument-order mistake (one line)."""

    def parse_known_args(self, args=None, namespace=None):
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message):
        hint = order_hint(self, getattr(self, "_argv", []), message)
        super().error(f"{message}; {hint}" if hint else message)
