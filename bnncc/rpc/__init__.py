"""Compiled models on remote devices through TVM's RPC tracker, and the tracker/server fleet itself.

* :mod:`bnncc.rpc.remote`: run/time a compiled model on a device (``bnncc run --rpc``): :func:`run_remote`,
  :func:`time_remote`, :func:`connect`, :class:`RemoteError`; :func:`library_arch`; its kernels one by one
  (``bnncc profile --rpc``): :func:`time_kernels_remote`, :func:`remote_signature`.
* :mod:`bnncc.rpc.tracker`: the tracker protocol, bounded in time (:func:`tracker_summary`,
  :func:`request_session`, :func:`servers`, ...) and :func:`start_tracker`; :class:`RpcError`.
* :mod:`bnncc.rpc.process`: the fleet's background processes (:func:`free_port`, :func:`spawn`,
  :func:`stop_process`).
* :mod:`bnncc.rpc.cli`: ``bnncc rpc tracker | server | status``.

The names are resolved on first use: importing the package imports neither TVM nor numpy (``bnncc.pipeline``
asks it for :func:`library_arch` when it loads a library).
"""

from bnncc.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".remote": ("RemoteError", "connect", "library_arch", "remote_signature", "run_remote", "time_kernels_remote",
                "time_remote", "to_numpy"),
    ".tracker": ("RpcError", "await_server", "reach_tracker", "request_session", "servers", "split_addr",
                 "start_tracker", "tracker_cmd", "tracker_keys", "tracker_summary"),
    ".process": ("free_port", "log_tail", "spawn", "stop_process"),
})
