"""Sandboxes that run generated programs: isolation, limits, the worker protocol."""

from __future__ import annotations

from .runner import SandboxLimits, SandboxResult, isolation_level, run_program

__all__ = ["SandboxLimits", "SandboxResult", "isolation_level", "run_program"]
