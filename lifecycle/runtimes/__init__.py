"""Adapters that start, stop and observe servers, behind ``protocol.Runtime``.

They never touch the event store or the UI: they report observations and raise
``protocol.RuntimeFailure`` with a message a user can act on.
"""
