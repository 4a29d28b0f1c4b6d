"""Tests of the vLLM rollout backend on a real vLLM engine; they run in vLLM's environment only.

``./triune test-vllm`` makes that environment (``bench/vllm_env.sh``: vLLM's CPU build on a
machine without a GPU) and runs these tests in it. The project's own environment has no vLLM,
so there the directory holds nothing to collect.
"""

import importlib.util

if importlib.util.find_spec("vllm") is None:
    collect_ignore_glob = ["test_*.py"]
