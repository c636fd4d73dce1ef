"""The HTTP edge: the ``/api`` routes (``endpoints``) and the bearer-token check (``auth``)."""
