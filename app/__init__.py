"""Keel: an operations appliance on PostgreSQL."""

__version__ = "0.1.0"
