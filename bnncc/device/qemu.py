"""``bnncc.device.qemu``: the emulated aarch64 device under the name deploy/README.md documents
(``from bnncc.device import qemu``); the public API of :mod:`bnncc.device`, whose modules hold the code."""

from bnncc.device import *  # noqa: F403
from bnncc.device import __all__  # noqa: F401
