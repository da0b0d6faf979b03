"""cgr-plugin's own extension points, registered through the same hooks as any plugin."""

from __future__ import annotations

from collections.abc import Callable

from .hookspecs import hookimpl


@hookimpl
def register_extractors(register: Callable[..., None]) -> None:
    from .extraction import extract_letter

    register("cgr", extract_letter)


@hookimpl
def register_sandboxes(register: Callable[..., None]) -> None:
    from .sandbox.runner import BWRAP, PROCESS

    register("bwrap", BWRAP)  # bubblewrap; without it programs run only with CGR_SANDBOX=process
    register("process", PROCESS)  # weak isolation, by explicit choice: sandbox=process
