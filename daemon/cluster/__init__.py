"""Jobs on a Ray cluster (`dermis serve --ray ADDRESS`): the daemon stays the front door and becomes a
Ray driver; ``DermisWorker`` actors (one per GPU) run ``pipeline.run`` with their models resident.

Only ``settings`` may be imported without Ray installed; the daemon imports the rest only when a
cluster is configured, so without ``--ray`` Ray is never imported (tests/test_cluster_optional.py).
"""
