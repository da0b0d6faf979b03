"""Models: the backend protocol, llama.cpp and lm-eval backends, the registry, retries and cache.
"""
