"""A custom model whose load fails: it must be reported, not crash the server."""

from __future__ import annotations

from ketch.serving import Model


class Broken(Model):
    def load(self) -> bool:
        raise RuntimeError("weights file is corrupt (checksum mismatch)")
