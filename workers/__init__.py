"""Celery workers: the jobs the web process queues, each a short story calling ``bot.*``."""
