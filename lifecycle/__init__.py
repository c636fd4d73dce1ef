"""The lifecycle of model servers, one folder per role; ``service.LifecycleService`` is the door.

- ``core/``: pure values and decisions (states, events, projection, policy, planner, status);
- ``catalog/``: ``models.yaml`` into ``ModelSpec``s, its checks and the live reload;
- ``observe/``: probes, readiness watching, Docker events, availability;
- ``runtimes/``: the ``Runtime`` protocol and its process, docker, compose and external adapters;
- ``supervisor/``: the reconciler and its wake-ups;
- ``api/``: the ``/api`` routes and the bearer-token check.

Who may import whom is an import-linter contract in ``pyproject.toml``, run by ``make test``.
"""
