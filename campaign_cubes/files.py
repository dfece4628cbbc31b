"""Writing a file so that a reader never sees half of it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, content: str | bytes) -> Path:
    """Write `content` (text as UTF-8) to `path` through a temporary file and an atomic rename.

    A reader (a browser, a server) sees the old file or the new one, never a part;
    the temporary file is removed if anything fails. Returns `path`.
    """
    data = content.encode("utf-8") if isinstance(content, str) else content
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as sink:
            sink.write(data)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the page from a web server's user
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
