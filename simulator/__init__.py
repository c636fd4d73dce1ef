"""A model-server simulator that speaks the NIM, llama.cpp and vLLM HTTP dialects.

Run it with ``python -m simulator --engine nim --port 8000 --model-id demo``.
It needs only the standard library plus starlette and uvicorn, so the same
package runs from the venv and inside the ``dxg-sim:local`` scratch image.
Its timing is deterministic and every reply states the timing it intended,
so tests and benchmark calibration can compare measurements with ground truth.
"""
