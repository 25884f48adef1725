"""genguard.server: the HTTP gateway (``genguard serve``).

``genguard.server.app.create_app(config)`` builds the FastAPI app; the CLI commands live
in :mod:`genguard.server.cli`. Nothing is imported here, so ``genguard`` starts without
the web stack loaded (and works without it for every other command).
"""
