"""A model-server simulator that speaks the NIM, llama.cpp and vLLM HTTP dialects.

Run it with ``python -m simulator --engine nim --port 8000 --model-id demo``
(``--help`` lists the knobs). It needs only the standard library plus
starlette and uvicorn, so the same package runs from the venv and inside the
``dxg-sim:local`` scratch image (``python -m simulator.image`` builds it).

Readiness, per engine, ``--startup-s`` after the process started:

- nim: ``/v1/health/live`` 200 as soon as it listens; ``/v1/health/ready``
  503 until loaded, then 200. ``/v1/models`` and chat answer 503 until then.
- llamacpp: every route answers 503
  ``{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}``
  until loaded; then ``/health`` gives 200 ``{"status":"ok"}``.
- vllm: like real vLLM (>= 0.6), the port is bound at start but only listens
  once loaded, so connections are refused while loading; after that
  ``/health`` is 200 and ``/v1/models`` lists the model. With
  ``--serve-while-loading`` it answers during the load instead: ``/health``
  200, ``/v1/models`` an empty list, chat 503. Either way "ready" means
  "``/v1/models`` lists the model", the gate a probe applies to real vLLM.

Timing: with the defaults, token ``i`` of a reply is sent at
``arrival + ttft + i / rate`` on absolute deadlines (no drift). The first stream
frame carries only the role (``"content": null`` for llamacpp, ``""``
otherwise) and is sent at once. Replies are ``max_tokens`` tokens
(``--max-tokens-default`` if unset) cycling through ``tokens.WORDS``;
``prompt_tokens`` counts whitespace-separated words, the one tokenizer behind
usage, ``/tokenize`` (llamacpp, vllm) and the prefix cache.

The serving model (``serving.py``, ``prefix_cache.py``; every knob off or
neutral by default) plans each request's whole schedule at its arrival, so the
timing it reports is ground truth: ``--max-batch``/``--batch-slowdown`` (FIFO
queueing for a batch slot; the token interval stretched by the batch joined),
``--prefill-tokens-per-s`` (TTFT grows with uncached prompt tokens),
``--prefix-cache-tokens`` (an LRU of 16-token prompt blocks; cached tokens in
``usage.prompt_tokens_details`` or llama.cpp's ``timings.cache_n``),
``--decode-slowdown-per-1k`` (slower decoding for deeper prompts),
``--reasoning-tokens`` (the first tokens on ``delta.reasoning_content``, or
``delta.reasoning`` for vllm) and ``--natural-length`` (replies stop early
unless the request sets ``ignore_eos`` or ``min_tokens``).

Headers ``x-sim-ttft-ms`` / ``x-sim-tokens-per-s`` and a ``"sim"`` object in
the JSON reply or the last stream chunk state the intended timing (queueing,
prefill, cached tokens, batch size, token interval, due times of the first
token, the first answer token and the last token) and how late the server
itself was (``max_late_ms``, ``mean_late_ms``); llamacpp replies also carry
llama-server's ``timings`` block, computed from the same plan.

Log lines (stderr, flushed at once) carry ``SIM_EVENT <name> t=<epoch>``
for start, listening, ready, crash, fail_start, sigterm_ignored, stopping
and stopped; ``events.parse_event`` reads them and ``process.SimulatorProcess``
runs the simulator as a child and waits on them.

Exit codes: 0 after SIGTERM/SIGINT (open streams get 5 s to finish),
3 for ``--fail-start`` (before listening), 4 if the port cannot be bound,
``--crash-exit-code`` (default 1) for ``--crash-after-s``, and death by
SIGKILL (-9 / 137) when ``--ignore-sigterm`` made SIGTERM a no-op.
"""
