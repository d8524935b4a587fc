"""mkdocs hook: the site's configuration page is ``config/README.md`` itself.

``config/README.md`` is the configuration reference (the Snakemake catalog's convention, tested
against the schema); ``docs/configuration.md`` only names it, and this hook puts its text in the
page at build time, so the reference has one owner. Links into the repository (``../x``) have no
page on the site and become code spans naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "config" / "README.md"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != "configuration.md":
        return markdown
    text = SOURCE.read_text()
    return re.sub(r"\[([^\]]+)\]\(\.\./([^)\s]+)\)", lambda m: f"`{m.group(2)}`", text)
