"""A Markdown file that kedro-viz previews (kedro-datasets' ``text.TextDataset`` has no
preview)."""

from kedro_datasets._typing import HTMLPreview
from kedro_datasets.text import TextDataset


class MarkdownDataset(TextDataset):
    """``text.TextDataset`` with a kedro-viz preview: its HTML preview renders Markdown
    (headings, tables, bold), so the file's text is the preview."""

    def preview(self) -> HTMLPreview:
        return HTMLPreview(self.load())
