"""Models: the backend protocol (``base``), llama.cpp and lm-eval backends, ``make_backend``
(``factory``), retries, the response cache and the registry; ``backends`` re-exports them.
"""
