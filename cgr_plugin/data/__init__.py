"""Stage 1, data: dataset rows to normalized MCQA items (field mapping, readers, the bundle).

Imports only the bottom layer (record, errors, plugins, prompts, extraction).
"""
