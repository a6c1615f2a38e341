"""Text from users (transcripts, file names, repo ids, error messages quoting them) inside the page's Markdown.

The app's status lines are Markdown, so a transcript such as ``![x](https://evil.example/pixel.png)`` would load a
remote image, and ``<form>`` or ``[click](...)`` would become a form or a link. :func:`literal` escapes every ASCII
punctuation character with a backslash (CommonMark lets any of them be escaped, and an escaped one is always shown
as itself), so no link, image, HTML tag, autolink, emphasis or heading can start inside user text. Line breaks
become spaces: a status line stays one line.
"""

from __future__ import annotations

import re

_PUNCTUATION = re.compile(r"""([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])""")


def literal(value: object) -> str:
    """Markdown that shows ``str(value)`` exactly as written, on one line."""
    text = " ".join(str(value).split())
    return _PUNCTUATION.sub(r"\\\1", text)
