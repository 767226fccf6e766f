"""Training workers on 127.0.0.1, as TF_CONFIG describes them: the tiny model's train.py
command, its workers started, and their ends (train/test_distributed.py, LoRA's too)."""

import json
import subprocess

from fixtures import script_env, train_command
from launch_workers import free_ports


def command(models_dir, corpus, checkpoint_dir, batch_size, *flags):
    return train_command(models_dir, corpus, '--batch_size', str(batch_size), '--noise',
                         '0.05', *flags, checkpoint_dir=checkpoint_dir)


def start_workers(cmd, n=2, timeout=60):
    hosts = [f'127.0.0.1:{p}' for p in free_ports(n)]
    procs = []
    for index in range(n):
        env = script_env(TF_CONFIG=json.dumps(
            {'cluster': {'worker': hosts}, 'task': {'type': 'worker', 'index': index}}))
        procs.append(subprocess.Popen(cmd + ['--collective_timeout', str(timeout)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    return procs


def finish(procs):
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    return [out for out, _ in outs]
