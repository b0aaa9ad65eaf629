"""soakq's Celery side: the app, its tasks and the Redis run store.

Importing this package imports nothing heavy; ``workers.store`` is usable without Celery.
"""
