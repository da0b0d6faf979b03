"""Sandboxes that run generated programs: the ``Sandbox`` interface, the built-in backends
(``bwrap``, ``process``), isolation, limits, the worker protocol and a conformance suite
(``python -m cgr_plugin.sandbox.conformance NAME``)."""

from __future__ import annotations

from .interface import (
                        Sandbox,
                        SandboxError,
                        SandboxLimits,
                        SandboxResult,
                        SandboxStartError,
                        SandboxUnavailable,
                        StartedSandbox,
                        as_sandbox,
)
from .isolation import isolation_level
from .runner import run_program

__all__ = ["Sandbox", "SandboxError", "SandboxLimits", "SandboxResult", "SandboxStartError",
           "SandboxUnavailable", "StartedSandbox", "as_sandbox", "isolation_level", "run_program"]
