"""The gRPC daemon: ``start.py`` builds, binds and returns the running server; ``servicer.py`` turns
requests into queue calls; ``wire.py`` converts between dermis.v1 messages and the daemon's types;
``upload.py`` checks and receives job uploads; ``auth.py`` holds the token; ``runtime.py`` the listen
address, the runtime file and the daemon lock; ``info.py`` what GetServerInfo reports. The work
itself is done by ``jobs`` (and the configured watch folders by ``watch``).
"""
