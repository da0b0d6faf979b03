"""Publishable statistics over finished runs: ``cgr report`` (see README, "Report")."""
