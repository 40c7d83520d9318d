"""Moved to ganqp_cli.metrics.monitor; kept while train.py imports FidMonitor from here."""

from ganqp_cli.metrics.monitor import FidMonitor

__all__ = ["FidMonitor"]
