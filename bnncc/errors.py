"""Errors bnncc raises for bad input: each names where (file, layer, op) and why."""


class BnnccError(Exception):
    """Base class of every error bnncc reports to a user."""


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
        where = ", ".join(p for p in (file and f"file {file}", layer and f"layer {layer!r}") if p)
        super().__init__(f"{where}: {reason}" if where else reason)
