"""Errors bnncc raises for bad input: each names where (file, layer, op) and why."""


class BnnccError(Exception):
    """Base class of every error bnncc reports to a user."""


def printable(text: str, limit: int = 120) -> str:
    """``text`` from a model file (a layer or op name) as one printable line: control characters escaped, cut
    at ``limit`` characters (a damaged file's names can hold anything)."""
    s = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else "?" for c in str(text))
    return s if len(s) <= limit else s[:limit] + "…"


class OpError(BnnccError, ValueError):
    """A binary operator was given arguments it cannot accept."""

    def __init__(self, op: str, reason: str):
        self.op, self.reason = op, reason
        super().__init__(f"{op}: {reason}")


class TargetError(BnnccError, ValueError):
    """An unknown or unusable compilation target."""


class FrontendError(BnnccError):
    """A model file or layer that bnncc cannot import."""

    def __init__(self, reason: str, *, file: str | None = None, layer: str | None = None):
        self.file, self.layer, self.reason = file, layer, reason
        where = ", ".join(p for p in (file and f"file {file}", layer and f"layer '{printable(layer)}'") if p)
        # one line whatever the file holds: names from it may carry newlines or control characters
        super().__init__(printable(f"{where}: {reason}" if where else reason, limit=4000))
