"""The emulated arm64 device from the shell (``python -m bnncc.device ...``; see deploy/README.md).

    python -m bnncc.device serve [--port 9190] [--key aarch64-qemu]
        a TVM RPC tracker on 127.0.0.1:PORT and a qemu aarch64 RPC server registered under KEY; runs until
        Ctrl-C. Then: ``bnncc run m.so -i x.npy -o y.npy --rpc 127.0.0.1:PORT --key KEY``.
    python -m bnncc.device app MODEL.so -i x.npy [-i ...] -o y.npy [--repeat N] [--count-insns]
        the C++ deploy app (deploy/cpp/bnncc_run, cross-built) under qemu; ``--count-insns`` prints the exact
        instruction count of one call of ``main`` (qemu-insncount, one thread; needs --repeat ≥ 1).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from bnncc.errors import BnnccError
from bnncc.inputs import load_input
from bnncc.outputs import check_not_input, check_writable, save_outputs


def _serve(args) -> int:
    from bnncc.device.qemu_server import QemuRpcDevice
    from bnncc.rpc.process import stop_process
    from bnncc.rpc.tracker import start_tracker

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    tracker_proc, tracker = start_tracker(port=args.port or None)
    dev = QemuRpcDevice(args.key, tracker=tracker, cpu=args.cpu)
    try:
        print(f"bnncc.device: starting the qemu aarch64 RPC server ({args.cpu}) ...", file=sys.stderr, flush=True)
        dev.start()
        print(f"bnncc.device: tracker {tracker}, key {args.key!r}; e.g. bnncc run m.so -i x.npy -o y.npy "
              f"--rpc {tracker} --key {args.key}   (Ctrl-C stops)", file=sys.stderr, flush=True)
        print(tracker, flush=True)
        while not stop.wait(5.0):
            dev.ensure_server()  # a server killed by a client's crash comes back
    finally:
        dev.close()
        stop_process(tracker_proc)
    return 0


def _app(args) -> int:
    from bnncc.device.deploy_app import run_deploy_app

    if args.count_insns and args.repeat < 1:
        raise BnnccError("--count-insns needs --repeat N (N >= 1): the counted region is the N timed calls")
    if args.output:
        check_writable(args.output)
        check_not_input(args.output, [args.model, *args.input])
    inputs = [load_input(p) for p in args.input]
    res = run_deploy_app(args.model, inputs, repeat=args.repeat, count_insns=args.count_insns, cpu=args.cpu)
    if args.output:
        save_outputs(args.output, res.outputs)
    for i, o in enumerate(res.outputs):
        print(f"bnncc.device: output {i}: shape {o.shape} {o.dtype}", file=sys.stderr)
    if res.insns is not None:
        print(f"{res.insns.region(1, 2) / args.repeat:.0f} instructions per call of main "
              f"(qemu-insncount, {res.insns.vcpus} vcpu, {args.repeat} calls)")
    return 0


def main(argv: list[str] | None = None) -> int:
    from bnncc.device.arm64 import DEFAULT_CPU
    from bnncc.device.qemu_server import DEFAULT_KEY

    p = argparse.ArgumentParser(prog="python -m bnncc.device", description="The emulated arm64 device (qemu-user).")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="RPC tracker + qemu aarch64 RPC server, until Ctrl-C")
    s.add_argument("--port", type=int, default=9190, help="tracker port on 127.0.0.1 (0: any free port)")
    s.add_argument("--key", default=DEFAULT_KEY)
    s.add_argument("--cpu", default=DEFAULT_CPU, help="qemu CPU model")
    s.set_defaults(func=_serve)
    a = sub.add_parser("app", help="run a compiled .so in the C++ deploy app under qemu")
    a.add_argument("model")
    a.add_argument("--input", "-i", action="append", required=True)
    a.add_argument("--output", "-o")
    a.add_argument("--repeat", type=int, default=0)
    a.add_argument("--count-insns", action="store_true")
    a.add_argument("--cpu", default=DEFAULT_CPU, help="qemu CPU model")
    a.set_defaults(func=_app)
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except BnnccError as e:
        print(f"bnncc.device: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
