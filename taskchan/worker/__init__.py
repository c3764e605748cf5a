"""The worker: leases messages from taskchan channels and runs their consumers (``worker.py``)."""

from .worker import Worker

__all__ = ["Worker"]
