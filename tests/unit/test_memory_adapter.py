"""The in-memory adapter keeps the adapter contract (it stands in for real systems)."""

from adapter_contract import AdapterContract

from adapters.memory import MemoryAdapter


class TestMemoryAdapter(AdapterContract):
    def make_adapter(self, records):
        return MemoryAdapter("crm", {"contacts": records})
