"""A text file the synthetic generator may rewrite, but only if the generator wrote it."""

from __future__ import annotations

import hashlib

from kedro.io.core import DatasetError, get_filepath_str
from kedro_datasets.text import TextDataset

MARKER_SUFFIX = ".generated.sha256"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class GeneratedTextDataset(TextDataset):
    """``text.TextDataset`` that refuses to overwrite a file it did not write itself.

    Each save writes a sidecar ``<file>.generated.sha256`` with the content's hash. A later save
    goes ahead only if the file is absent, or present with a matching sidecar: a user's own
    export (no sidecar) or a generated file the user edited (hash differs) is never replaced.
    """

    def _marker(self, path: str) -> str:
        return path + MARKER_SUFFIX

    def ensure_writable(self) -> None:
        """Raise DatasetError if the file exists and the generator did not write it as it is."""
        path = get_filepath_str(self._get_save_path(), self._protocol)
        if not self._fs.exists(path):
            return
        marker = self._marker(path)
        owned = self._fs.exists(marker) and (
            self._fs.cat_file(marker).decode().strip() == _sha256(self._fs.cat_file(path))
        )
        if not owned:
            raise DatasetError(
                f"{path} was not written by the synthetic generator (or was changed since), "
                "so it is not overwritten. To process it, run `kedro run --pipelines from_raw`; "
                "to regenerate, move it away first."
            )

    def load(self) -> str:
        """The file as text. Bytes that are not UTF-8 (an export written in another encoding,
        a damaged line) are read as U+FFFD rather than failing the run; data_processing counts
        each such line (``invalid_utf8``)."""
        path = get_filepath_str(self._get_load_path(), self._protocol)
        return self._fs.cat_file(path).decode("utf-8", errors="replace")

    def save(self, data: str) -> None:
        self.ensure_writable()
        super().save(data)
        path = get_filepath_str(self._get_save_path(), self._protocol)
        self._fs.pipe_file(self._marker(path), _sha256(data.encode("utf-8")).encode())
