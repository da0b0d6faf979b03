"""Fixed programs: one strategy written once and run on every item, the control that tells a
generated program's gain from its strategy's.

Three sources, later ones adding names: the programs shipped in ``programs/fixed/``, plugins
(``register_fixed_programs``), and a user folder (model_arg ``fixed_programs=PATH``, one
``NAME.py`` per program). Each is a program of the usual contract (``def solve(item, solver)``)
and runs like a generated one: same sandbox, helpers, budget, statuses and trace, no generator.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .. import plugins
from ..errors import CGRError
from ..sandbox.entry import parse_python
from .scaffold import ENTRY_POINT

__all__ = ["SHIPPED_DIR", "FixedProgramError", "fixed_programs", "fixed_source"]

SHIPPED_DIR = Path(__file__).with_name("fixed")


class FixedProgramError(CGRError):
    """A fixed program that is unknown, unreadable or not a program of the contract."""


def _check(name: str, source: str, origin: str) -> str:
    try:
        tree = parse_python(source)
    except (SyntaxError, ValueError) as err:
        raise FixedProgramError(f"fixed program {name!r} ({origin}) does not parse: {err}"
                                ) from None
    if not any(getattr(node, "name", None) == ENTRY_POINT for node in tree.body):
        raise FixedProgramError(f"fixed program {name!r} ({origin}) has no top-level "
                                f"def {ENTRY_POINT}(item, solver)")
    return source


def _folder(folder: Path, origin: str) -> dict[str, str]:
    if not folder.is_dir():
        raise FixedProgramError(f"fixed_programs={folder}: no such folder (one NAME.py per "
                                "fixed program)")
    return {path.stem: _check(path.stem, path.read_text(encoding="utf-8"), f"{origin} {path}")
            for path in sorted(folder.glob("*.py")) if not path.name.startswith("_")}


def fixed_programs(folder: str | Path | None = None) -> Mapping[str, str]:
    """Every fixed program by name: shipped, then plugins', then ``folder``'s (which may
    replace a shipped one of the same name, as a user's template shadows a packaged one)."""
    found = _folder(SHIPPED_DIR, "shipped")
    for name, source in plugins.registry().entries["fixed_programs"].items():
        origin = f"plugin {plugins.registry().origins[('fixed_programs', name)]}"
        found[name] = _check(name, source, origin)
    if folder is not None:
        found |= _folder(Path(folder), "fixed_programs=")
    return found


def fixed_source(name: str, folder: str | Path | None = None) -> str:
    """The source of fixed program ``name``, or an error listing the ones there are."""
    found = fixed_programs(folder)
    if name not in found:
        raise FixedProgramError(f"no fixed program named {name!r}; there are: "
                                f"{', '.join(sorted(found))} (add your own with "
                                "fixed_programs=FOLDER or a plugin)")
    return found[name]
