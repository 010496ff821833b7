"""The Daphne worker process: `bin/daphne-worker` runs `python -m server.worker`."""
