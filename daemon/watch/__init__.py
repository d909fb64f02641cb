"""Hot folders: ``folder.py`` runs one watched folder (claim, run, publish, archive, recover);
``scan.py`` decides which files are complete inputs; ``journal.py`` records every step in SQLite;
``files.py`` moves files without overwriting; ``settings.py`` resolves per-file settings;
``runner.py`` runs a job in this process; ``service.py`` runs the config's folders inside the daemon,
through ``jobs``' queue.
"""
