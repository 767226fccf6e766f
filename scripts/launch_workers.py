#!/usr/bin/env python3
"""Start N train.py workers on this machine, one per GPU, as a cluster on localhost.

    python scripts/launch_workers.py 4 --dataset input-text.txt.npz --seed 1 --steps 2000
    python scripts/launch_workers.py --dataset input-text.txt.npz --seed 1   # N: the GPUs

Each worker gets TF_CONFIG for its place in the cluster and CUDA_VISIBLE_DEVICES for its
GPU; all other arguments go to train.py unchanged (--batch_size is per worker). If one
worker fails, the others are stopped.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def visible_gpus():
    """GPUs nvidia-smi lists, narrowed by CUDA_VISIBLE_DEVICES when that is set."""
    try:
        listed = subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True,
                                check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return []
    ids = [str(i) for i in range(len(listed))]
    visible = os.environ.get('CUDA_VISIBLE_DEVICES')
    return [i for i in visible.split(',') if i in ids] if visible else ids


def main():
    if len(sys.argv) > 1 and sys.argv[1].isdigit():
        n, args = int(sys.argv[1]), sys.argv[2:]
        gpus = visible_gpus()[:n]
    else:
        gpus, args = visible_gpus(), sys.argv[1:]
        n = len(gpus)
    if n < 1:
        sys.exit('launch_workers.py: no GPU found; give the number of workers: '
                 'launch_workers.py N [train.py arguments]')
    hosts = [f'localhost:{port}' for port in free_ports(n)]
    procs = []
    for index in range(n):
        # One GPU per worker; without GPUs (a CPU trial) the workers share the CPU.
        gpu = gpus[index] if index < len(gpus) else ''
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=gpu, TF_CONFIG=json.dumps(
            {'cluster': {'worker': hosts}, 'task': {'type': 'worker', 'index': index}}))
        env['PYTHONPATH'] = os.pathsep.join(filter(None, [os.path.join(ROOT, 'src'),
                                                          env.get('PYTHONPATH')]))
        procs.append(subprocess.Popen([sys.executable, os.path.join(ROOT, 'train.py'), *args],
                                      env=env))
    signal.signal(signal.SIGINT, lambda *_: [p.send_signal(signal.SIGINT) for p in procs])
    signal.signal(signal.SIGTERM, lambda *_: [p.send_signal(signal.SIGTERM) for p in procs])
    while any(p.poll() is None for p in procs):
        if any(p.returncode not in (None, 0) for p in procs):
            for p in procs:
                if p.poll() is None:
                    p.terminate()
        time.sleep(1)
    sys.exit(max(p.returncode for p in procs))


if __name__ == '__main__':
    main()
