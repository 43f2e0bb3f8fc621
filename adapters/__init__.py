"""Connector adapters: how changes reach real systems, compare-and-set, exactly once."""

from ledger.ports import Adapter, Record, Write, WriteResult

__all__ = ["Adapter", "Record", "Write", "WriteResult"]
