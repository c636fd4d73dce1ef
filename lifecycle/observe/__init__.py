"""Looking at servers and engines from outside: ready probes per engine, the readiness watch of
starting servers, Docker's event stream, and the cached availability checks."""
