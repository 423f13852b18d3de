"""Records the serving API appended (``POST /events``, ``POST /users``), one JSONL file a day."""

from __future__ import annotations

from kedro_datasets.partitions import PartitionedDataset


class IncomingJsonlDataset(PartitionedDataset):
    """``partitions.PartitionedDataset`` of JSONL text files that loads as ``{}`` when no file
    exists yet (the plain dataset raises), so a fresh project runs with nothing recorded."""

    def load(self) -> dict:
        if not self._list_partitions():
            return {}
        return super().load()
