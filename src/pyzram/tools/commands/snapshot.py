"""``pyzram snapshot``: a live process's anonymous memory as a page file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pyzram.tools.common import UsageError, console


def command(
    pid: Annotated[int | None, typer.Argument(help="the running process to capture")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="page file to write")] = Path(
        "snapshot.pages"
    ),
    spawn: Annotated[
        str | None, typer.Option(help="instead of PID: start a sample workload (python, sqlite)")
    ] = None,
) -> None:
    """Capture a live process's resident anonymous memory as a page file."""
    from rich.progress import Progress

    from pyzram.workload.pages import capture, snapshot_process, write_page_file

    if (pid is None) == (spawn is None):
        raise UsageError(None, "give exactly one of PID or --spawn")
    if pid is not None:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"reading pid {pid}", total=None)
            pages = snapshot_process(
                pid, progress=lambda d, t: bar.update(task, completed=d, total=t)
            )
    else:
        pages = capture(spawn)
    write_page_file(output, pages)
    console.print(f"wrote {len(pages)} pages ({len(pages) * 4096 / 2**20:.1f} MiB) to {output}")
