"""Where the packaged task configs, templates and data live.

A wheel carries ``task_configs/``, ``templates/`` and ``studies/`` inside ``cgr_plugin/``
(hatchling force-include); a source checkout or editable install keeps them at the repository
top level.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _resource_dir(name: str) -> Path:
    inside = PACKAGE_DIR / name
    if inside.is_dir():
        return inside
    beside = PACKAGE_DIR.parent / name
    if beside.is_dir():
        return beside
    raise FileNotFoundError(
        f"cgr-plugin resource folder {name!r} is missing: looked in {inside} and {beside}. "
        "Reinstall the package (pip install cgr-plugin)."
    )


TASKS_DIR = _resource_dir("task_configs")
TEMPLATES_DIR = _resource_dir("templates")
DATA_DIR = TASKS_DIR / "_data"
STUDIES_DIR = _resource_dir("studies")  # the shipped study files, `cgr study NAME`


def user_template_dirs() -> list[Path]:
    """``CGR_TEMPLATES_PATH`` folders (os.pathsep-separated), searched before the packaged ones."""
    raw = os.environ.get("CGR_TEMPLATES_PATH", "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p]


def cache_dir() -> Path:
    """Per-user cache for joined model files (``CGR_CACHE_DIR`` overrides)."""
    raw = os.environ.get("CGR_CACHE_DIR")
    if raw:
        return Path(raw).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cgr-plugin"
