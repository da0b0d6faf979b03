"""Stage 3, the run: the ``cgr`` LM, its channels (direct, assisted, controls), broker, journal.
"""
