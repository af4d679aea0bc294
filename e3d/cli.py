"""The ``e3d`` command: argument parsing, dispatch, and one-line errors with exit code 2."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

COMMANDS = (
    "e3d.commands.models",
    "e3d.commands.profile",
    "e3d.commands.search",
    "e3d.commands.sweep",
    "e3d.commands.scale",
    "e3d.commands.export",
    "e3d.commands.convert_checkpoint",
    "e3d.commands.train",
    "e3d.commands.evaluate",
    "e3d.commands.data",
    "e3d.commands.analyze",
    "e3d.commands.paper",
    "e3d.commands.dashboard",
    "e3d.commands.latency_table",
)
"""Modules that each add one subcommand through ``register(subparsers)``."""


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (``e3d models: error: ...``) and exit with 2, and which
    takes options only as spelled: a prefix such as ``--clip`` is refused, not read as ``--clip-index``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print one line naming the problem and exit 2; ``--help`` shows the usage."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def given_options(args: argparse.Namespace, defaults: dict[str, Any]) -> str:
    """The options among ``defaults`` (dest -> parser default) given on the command line, as flags
    (``--width-mult, --format``); empty when none is. An option counts as given even at its default value
    (``--epochs 3``): it is told apart by the command line :func:`_main` keeps on ``args`` (``args.argv``,
    read with ``args.parser``'s option strings), not by its value."""
    given = [d for d in defaults if _on_command_line(args, d)]
    return ", ".join("--format" if d == "data_format" else "--" + d.replace("_", "-") for d in given)


def _on_command_line(args: argparse.Namespace, dest: str) -> bool:
    """Whether an option of ``args.parser`` that sets ``dest`` is among ``args.argv`` (before a ``--``), spelled
    whole, as ``--opt=value``, or (a short one) with its value attached: the spellings :class:`Parser` takes."""
    argv = list(args.argv)
    tokens = argv[: argv.index("--")] if "--" in argv else argv
    flags = [o for a in args.parser._actions if a.dest == dest for o in a.option_strings]
    return any(t == o or t.startswith(o + "=") or (not o.startswith("--") and t.startswith(o)) for t in tokens for o in flags)


FLOAT32_MAX = 3.4028234663852886e38
"""The largest float32: a learning rate above it cannot be applied to float32 weights."""


MAX_THREADS = 1024
"""Most torch threads a ``--threads`` option takes: far past any core count; 100000 made torch crash."""


MAX_HEARTBEAT_S = 86400
"""Longest ``--heartbeat`` interval, a day; Python's thread waits overflow past ~9e9 s."""


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def learning_rate(text: str) -> float:
    """argparse type: a number > 0 that float32 weights can take (at most :data:`FLOAT32_MAX`)."""
    value = positive_float(text)
    if value > FLOAT32_MAX:
        raise argparse.ArgumentTypeError(f"must be at most {FLOAT32_MAX:.4g} (float32), got {text!r}")
    return value


def clip_arg(text: str) -> tuple[int, int, int]:
    """argparse type: ``TxHxW`` such as ``16x112x112``."""
    parts = text.lower().split("x")
    try:
        t, h, w = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be TxHxW like 16x112x112, got {text!r}") from None
    if min(t, h, w) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return (t, h, w)


def preset_arg(text: str) -> tuple[str, float]:
    """argparse type: ``NAME:WIDTH`` as (name, width)."""
    name, _, width = text.partition(":")
    try:
        return name, float(width)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME:WIDTH, got {text!r}") from None


def int_in(text: str, low: int, high: int, what: str) -> int:
    """argparse helper: ``text`` as an integer from ``low`` to ``high``; ``what`` names the kind in the error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    if value > high:
        raise argparse.ArgumentTypeError(f"must be at most {high}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 that fits in 64 bits."""
    return int_in(text, 1, sys.maxsize, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 that fits in 64 bits."""
    return int_in(text, 0, sys.maxsize, "a non-negative integer")


def thread_count(text: str) -> int:
    """argparse type: torch CPU threads, 1 to :data:`MAX_THREADS`."""
    return int_in(text, 1, MAX_THREADS, "a positive integer")


def worker_count(text: str) -> int:
    """argparse type: loader or decoder processes, 0 to as many per usable core as ``--jobs`` takes
    (:data:`search.jobs.MAX_JOBS_PER_CORE`; each is a process: thousands would exhaust the machine)."""
    from search.jobs import MAX_JOBS_PER_CORE, usable_cores

    return int_in(text, 0, MAX_JOBS_PER_CORE * usable_cores(), "a non-negative integer")


def heartbeat_seconds(text: str) -> int:
    """argparse type: a heartbeat interval in seconds, 1 to :data:`MAX_HEARTBEAT_S`."""
    return int_in(text, 1, MAX_HEARTBEAT_S, "a positive integer")


def device_arg(text: str) -> str:
    """argparse type: ``cpu``, or ``cuda``/``cuda:N`` where that device exists (torch is imported only for those)."""
    if text == "cpu":
        return text
    from profiler.latency import DeviceError, resolve_device

    try:
        kind = resolve_device(text).type
    except DeviceError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if kind not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"unsupported device {text!r}; use cpu, cuda or cuda:N")
    return text


def build_parser() -> Parser:
    """The full ``e3d`` parser with every subcommand registered."""
    parser = Parser(
        prog="e3d",
        description="Search, profile and study resource-efficient 3D CNNs for video "
        "(Köpüklü et al., 'Resource Efficient 3D Convolutional Neural Networks').",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    for command in leaves(parser):
        command.add_argument(
            "--max-memory",
            type=memory_size,
            metavar="SIZE",
            help="refuse networks and proxy-task generation whose estimated memory exceeds SIZE, e.g. 8G (default: 80%% of RAM)",
        )
        command.set_defaults(parser=command)  # errors found after parsing name their command (_main)
    return parser


def leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers of ``parser``'s commands that take no subcommand (``e3d data check``, not ``e3d data``)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [parser]
    return [leaf for action in subs for child in dict.fromkeys(action.choices.values()) for leaf in leaves(child)]


def memory_size(text: str) -> int:
    """argparse type: a size such as 8G or 512M, in bytes."""
    from profiler.footprint import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``e3d`` console script; returns the exit code. Ctrl-C before the command runs (while
    the commands and torch load: the first seconds) is one line and 130 too."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("e3d: interrupted", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run its command in :func:`guarded`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args, unknown = build_parser().parse_known_args(argv)
    args.argv = argv  # which options were given, for given_options: a value alone cannot tell (--epochs 3 is the default)
    if unknown:  # argparse's own message would name the top parser ("e3d: error: ...")
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if getattr(args, "max_memory", None) is not None:
        from profiler.footprint import set_limit

        set_limit(args.max_memory)

    def run() -> int:
        from profiler.allocator import keep_freed_memory
        from search.interrupts import interrupt_signals

        keep_freed_memory()
        with interrupt_signals():
            return int(args.func(args) or 0)

    return guarded(run, prefix=f"{args.parser.prog}: ")


def drop_stdout() -> None:
    """After a closed pipe on stdout (``e3d search ... | head``): send what is still buffered and all later
    output to the null device, so that printing stops quietly (at exit too) while the command goes on."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # not a file with a descriptor (a test's capture): replace it
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (stdout for the rest of the process)
    finally:
        os.close(devnull)


def echo(text: str, write: Callable[[str], object] = print) -> None:
    """``write(text)`` (``print``, or a progress bar's ``write``, which prints to stdout too); a closed stdout drops
    it and everything printed later (:func:`drop_stdout`) instead of stopping the work."""
    try:
        write(text)
    except BrokenPipeError:
        drop_stdout()


def guarded(run: Callable[[], int], *, prefix: str = "", interrupted: str = "interrupted") -> int:
    """``run()``'s exit code, with what a user can cause as one line on stderr after ``prefix``: an e3d error, or a
    file error wherever it is met (a full disk, a folder without permission), 2; Ctrl-C, ``interrupted`` (what was
    kept and how to go on), 130; a closed pipe, 0. Anything else is a bug, and its traceback shows."""
    from space.files import FILE_ERRNOS, describe_os_error
    from space.spec import E3DError

    try:
        return run()
    except E3DError as e:
        print(f"{prefix}error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prefix}{interrupted}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        if e.errno not in FILE_ERRNOS:
            raise
        print(f"{prefix}error: {e.filename or 'a file'}: {describe_os_error(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
