"""The ``pyzram`` command (also ``python -m pyzram``): parses, dispatches, prints errors.

Each command lives in its own module under :mod:`pyzram.tools.commands`; this
module builds the command line from them.  Every command that takes pages
reads a page file (raw concatenated 4096-byte pages, as ``pyzram snapshot``
writes) or, without one, the embedded default corpus
(``pyzram.workload.pages.default_corpus``).  Errors print one line,
``pyzram: error: ...``, and exit non-zero; never a traceback.
"""

from __future__ import annotations

import sys

import typer

from pyzram.tools.commands import (
    bench,
    compare,
    ctl,
    explore,
    run,
    serve,
    snapshot,
    store,
    validate,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="The Linux swap I/O path and zram, modelled in Python to the byte.",
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
bench_app.callback()(bench.command)
bench_app.command("zram")(bench.zram_command)
bench_app.command("codecs")(bench.codecs_command)
bench_app.command("swap")(bench.swap_command)
bench_app.command("nbd")(bench.nbd_command)
bench_app.command("run")(bench.run_command)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; turn expected errors into one line and exit 1."""
    import errno as _errno

    try:
        rc = app(args=argv, standalone_mode=False)
    except (OSError, ValueError) as e:
        msg = str(e)
        if isinstance(e, OSError) and e.strerror:
            msg = e.strerror
            if e.errno in _errno.errorcode:
                msg += f" ({_errno.errorcode[e.errno]})"
            if e.filename:
                msg = f"{e.filename}: {msg}"
        print(f"pyzram: error: {msg}", file=sys.stderr)
        return 1
    except typer.Exit as e:
        return e.exit_code
    except KeyboardInterrupt:
        print("pyzram: interrupted", file=sys.stderr)
        return 130
    except typer.Abort:
        return 1
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
