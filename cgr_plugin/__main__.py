"""``python -m cgr_plugin ...`` is the ``cgr`` command."""

from .cli.main import cgr_main

cgr_main()
