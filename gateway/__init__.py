"""/v1: one OpenAI-compatible endpoint for every catalog model, loading each on demand.

Clients (Open WebUI, an editor plugin, the ``openai`` package, a script) name a model; the
gateway finds it in the catalog, asks the service to load it when it is not running, waits
for it to be ready, and passes the request through to its server, streaming chunk by chunk.
It uses the lifecycle through its service only, like the benchmark.
"""
