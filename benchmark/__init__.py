"""The product's benchmark: workloads, the async runner, metrics, stored runs and the command line.

It measures models through ``inference``-style streaming and reaches the lifecycle only
through ``LifecycleService``; the service never imports this package.
"""
