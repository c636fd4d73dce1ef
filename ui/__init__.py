"""The UI's building blocks, used by Home.py and the pages.

Pure view logic, no streamlit, unit-tested without a script run: ``format`` (dots, durations,
escaping), ``stats`` (p50/p90 load times), ``history_view`` (audit rows, filters, CSV),
``chat_view`` (turns, request messages, metric captions, error texts) and ``dialog_view`` (what
the model dialog shows and offers).

Streamlit components that only lay out those decisions: ``frame`` (banner + chips + dialog on
every page), ``chips``, ``model_dialog``, ``chat_render``, ``widgets``, plus ``service`` (the
one way to reach the lifecycle service) and ``routing`` (pages always run inside Home.py).
"""
