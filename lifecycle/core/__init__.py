"""The pure core of the lifecycle: values in, decisions out. No I/O of any kind.

States and status words, events and their redaction, the projection (the fold of a model's
events), the restart policy, the planner's memory of failures and load times, the planner,
the status view, the plain values shared with the runtimes, and the service's errors.
Nothing here imports a database, Docker, HTTP, a subprocess, a scheduler or Streamlit; an
import-linter contract in ``pyproject.toml`` keeps it that way.
"""
