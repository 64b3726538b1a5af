"""The one CLI, `atomsim`. `main(argv)` is callable from tests and returns the exit code.

Each part registers its subcommands from its own `cli.py` (`register(subparsers)`); those
modules import nothing heavy at import time (torch is imported inside the handlers), so
`atomsim simulate` runs where torch is absent. `main` sets the process up as every process that
measures or runs is (atomsim/process.py) before any command runs, so that those of `run`,
`profile`, `calibrate`, `validate` measure under the settings the profiles were taken with.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from . import __version__
from .args import Parser
from .errors import EXIT_INTERRUPTED, AtomsimError

# (module with register(subparsers)) in the order they appear in --help
COMMAND_MODULES = (
    "atomsim.sim.cli",        # simulate
    "atomsim.demo",           # demo
    "atomsim.models.cli",     # models list|build
    "atomsim.profile.cli",    # profile, profile show|compare|project
    "atomsim.profile.calibrate",  # calibrate (reference kernels for profile project --calibrate)
    "atomsim.run.cli",        # run
    "atomsim.validate.cli",   # validate
    "atomsim.report.cli",     # report memory, sweep
    "atomsim.report.search_cli",  # search
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(   # argparse's, with a hint for an argument-order mistake (atomsim/args.py)
        prog="atomsim",
        description="Profile, simulate, run and validate reload vs reuse schedules of "
        "multi-model pipelines on phones: the Atom paper's, bundled, or your own pipeline file "
        "(docs/pipelines.md).",
    )
    parser.add_argument("--version", action="version", version=f"atomsim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("atomsim"):
                continue  # that part is not built yet
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .process import pin_measurement_process, quiet_import_noise, quiet_library_warnings
    pin_measurement_process()   # before any command imports torch or starts a thread
    quiet_import_noise()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)   # what was asked, for the outputs' records
    # the libraries' warnings that say nothing to a user, unless --verbose (or ATOMSIM_VERBOSE=1)
    quiet_library_warnings(not (getattr(args, "verbose", False) or os.environ.get("ATOMSIM_VERBOSE") == "1"))
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except AtomsimError as e:
        print(f"atomsim: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("atomsim: interrupted", file=sys.stderr)
        if argv is None:   # the `atomsim` command: a further Ctrl-C must not break the exit
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
