"""External benchmark tools (AIPerf, llama-benchy) run against our servers as reference anchors.

Each lives in its own venv under ``.cache/perf-venvs/`` and is installed on first use; nothing
here is imported by the product. ``python -m perf.anchors`` checks both against the simulator.
"""
