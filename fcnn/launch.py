"""Start a multi-process run on this machine.

    python -m fcnn.launch --processes 2 [--devices-per-process 2] [--port P] -- \\
        python -m fcnn.main --dataset mnist --batch-size 128

Starts N copies of the program, each with FCNN_COORDINATOR (127.0.0.1 and a free
port: process 0 runs the coordinator there), FCNN_NUM_PROCESSES, FCNN_PROCESS_ID and
FCNN_DEVICES_PER_PROCESS in its environment; a program joins the run by calling
`fcnn.train.parallel.initialize()` first (`fcnn.main` and the recipes do), and `fit`
then trains data-parallel over the devices of all processes. Ctrl-C and SIGTERM are
passed on to every process; when one process fails, the others are stopped (after a
grace period) and the launcher exits with the failed process's code, naming it. On a
cluster the scheduler starts the processes instead: docs/multiprocess.md shows the
same run under SLURM and by hand on several hosts.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

from fcnn import cli

PROG = "python -m fcnn.launch"
GRACE_SECONDS = 30


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def build_parser():
    parser = cli.Parser(prog=PROG, description="Start N local processes of a data-parallel run.")
    parser.add_argument("--processes", type=cli.positive_int, required=True, help="number of processes")
    parser.add_argument("--devices-per-process", type=cli.positive_int, default=1,
                        help="CPU devices of each process (default: 1)")
    parser.add_argument("--port", type=cli.positive_int, default=None,
                        help="the coordinator's port on 127.0.0.1 (default: a free one)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the program and its arguments, after --")
    return parser


def environment(process: int, processes: int, devices: int, port: int) -> dict:
    """The environment of process `process` of the run."""
    return dict(os.environ, FCNN_COORDINATOR=f"127.0.0.1:{port}", FCNN_NUM_PROCESSES=str(processes),
                FCNN_PROCESS_ID=str(process), FCNN_DEVICES_PER_PROCESS=str(devices))


def run(command: list[str], processes: int, devices: int, port: int) -> int:
    """Starts the processes, forwards signals, waits; returns the exit code of the run."""
    children = [subprocess.Popen(command, env=environment(i, processes, devices, port))
                for i in range(processes)]

    def forward(signum, frame):
        del frame
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    failed_at, first = None, None
    while any(child.poll() is None for child in children):
        for i, child in enumerate(children):
            code = child.poll()
            if code not in (None, 0) and first is None:
                failed_at, first = time.monotonic(), code
                how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                sys.stderr.write(f"{PROG}: process {i} of {processes} {how}; the others stop "
                                 f"(they are ended after {GRACE_SECONDS} s)\n")
        if failed_at is not None and time.monotonic() - failed_at > GRACE_SECONDS:
            forward(signal.SIGKILL, None)
        time.sleep(0.2)
    if first is None:
        first = next((c for c in (child.returncode for child in children) if c != 0), 0)
    return 128 - first if first < 0 else first  # a signal s is reported as 128 + s


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no program given: put it after --, e.g. -- python -m fcnn.main")
    port = args.port or free_port()
    if args.port is not None and port_in_use(port):
        parser.error(f"--port {port}: the port is in use on 127.0.0.1; pick another or leave "
                     "--port out for a free one")
    return run(command, args.processes, args.devices_per_process, port)


if __name__ == "__main__":
    sys.exit(main())
