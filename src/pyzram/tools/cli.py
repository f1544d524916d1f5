"""The ``pyzram`` command (also ``python -m pyzram``): parses, dispatches, prints errors.

Each command lives in its own module under :mod:`pyzram.tools.commands`; this
module builds the command line from them.  Every command that takes pages
reads a page file (raw concatenated 4096-byte pages, as ``pyzram snapshot``
writes) or, without one, the embedded default corpus
(``pyzram.workload.pages.default_corpus``).  Errors print one line,
``pyzram: error: ...``, and exit non-zero; never a traceback.
"""

from __future__ import annotations

import errno
import signal
import sys
import threading
from typing import Annotated

import typer

from pyzram import __version__
from pyzram.tools.commands import (
    bench,
    compare,
    ctl,
    explore,
    run,
    serve,
    snapshot,
    store,
    sweep,
    validate,
)
from pyzram.tools.common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, UsageError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="The Linux swap I/O path and zram, modelled in Python to the byte.\n\n"
    "Exit status: 0 success, 1 failure, 2 usage error (an unknown option, a bad option "
    "value), 130 interrupted (Ctrl-C). Errors are one line: pyzram: error: ...",
)
bench_app = typer.Typer(
    invoke_without_command=True,
    help="Throughput figures (see README); with no subcommand, every figure in one table.",
)
app.add_typer(bench_app, name="bench")

app.command("store")(store.command)
app.command("validate")(validate.command)
app.command("snapshot")(snapshot.command)
app.command("run")(run.command)
app.command("compare")(compare.command)
app.command("ctl")(ctl.command)
app.command("serve")(serve.command)
app.command("explore")(explore.command)
app.command("sweep")(sweep.command)
bench_app.callback()(bench.command)
bench_app.command("zram")(bench.zram_command)
bench_app.command("codecs")(bench.codecs_command)
bench_app.command("swap")(bench.swap_command)
bench_app.command("nbd")(bench.nbd_command)
bench_app.command("run")(bench.run_command)
bench_app.command("sweep")(bench.sweep_command)


def _version(value: bool) -> None:
    if value:
        print(f"pyzram {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """The Linux swap I/O path and zram, modelled in Python to the byte.

    Exit status: 0 success, 1 failure, 2 usage error (a bad option or option value),
    130 interrupted (Ctrl-C).  Errors are one line, ``pyzram: error: ...``.
    """


def _error_text(e: BaseException) -> str:
    """One line for an expected error: the file, the kernel's words and its errno name."""
    msg = str(e)
    if isinstance(e, OSError) and e.strerror:
        msg = e.strerror
        if e.errno in errno.errorcode:
            msg += f" ({errno.errorcode[e.errno]})"
        if e.filename:
            msg = f"{e.filename}: {msg}"
    return msg


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command; errors as one line; exit 0, 1, 2 or 130.

    Ctrl-C ends any command with ``pyzram: interrupted`` and 130, after the
    command's own clean-up (host devices, swaps, cgroups) has run, whatever
    that clean-up raised on the way out.
    """
    interrupted = False

    def on_sigint(signum: int, frame: object) -> None:
        nonlocal interrupted
        interrupted = True
        raise KeyboardInterrupt

    previous = None
    if threading.current_thread() is threading.main_thread():
        # (a SIGINT the parent told us to ignore stays ignored)
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        rc = _run(argv)
    except KeyboardInterrupt:
        interrupted = True
        rc = EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if interrupted:
        print("pyzram: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if isinstance(rc, BaseException):
        print(f"pyzram: error: {_error_text(rc)}", file=sys.stderr)
        return EXIT_USAGE if isinstance(rc, UsageError) else EXIT_FAILURE
    return rc


def _run(argv: list[str] | None) -> int | BaseException:
    """Run the app: its exit code, or the expected error to report."""
    try:
        rc = app(args=argv, standalone_mode=False)
    except (OSError, ValueError) as e:
        return e
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        return EXIT_FAILURE
    except KeyboardInterrupt:
        raise
    except Exception as e:
        # Usage errors (a bad option value, an unknown option): click's ClickException,
        # which typer >= 0.23 bundles instead of depending on click; matched by its
        # interface so both work.  One line, click's exit code (2).
        message = getattr(e, "format_message", None)
        code = getattr(e, "exit_code", None)
        if callable(message) and isinstance(code, int):
            text = message()
            if text:  # (no text: no arguments, and the help has been shown)
                print(f"pyzram: error: {text}", file=sys.stderr)
            return code
        raise
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
