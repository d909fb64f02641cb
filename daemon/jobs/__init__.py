"""Jobs in process: ``queue.py`` (every job the daemon knows, their order and event logs),
``executor.py`` (the one thread that owns the device and runs ``pipeline.run``) and ``residency.py``
(models kept loaded under a budget, and the out-of-memory ladder). Nothing here knows about gRPC or
the command line: the server and the watch folder both submit ``JobSpec`` objects.
"""
