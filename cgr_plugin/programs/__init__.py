"""Programs: code extraction from generator output, audits, program packages.
"""
