"""Data-parallel training across processes (GPUs, machines) with TensorFlow's collective
all-reduce, configured as tf.distribute is: a TF_CONFIG environment variable per worker.

    TF_CONFIG='{"cluster": {"worker": ["host1:2222", "host2:2222"]},
                "task": {"type": "worker", "index": 0}}' ./train.py --dataset ...

Every worker builds the same graph on its own device, draws the same global batch and
trains on its own share; gradients are averaged across workers each step, so all copies
of the weights stay equal. Task 0, the chief, writes checkpoints, samples and summaries.
"""

import dataclasses
import json
import os

import tensorflow as tf
from tensorflow.python.ops import collective_ops

from gpt2tune.errors import UserError

tf1 = tf.compat.v1


@dataclasses.dataclass(frozen=True)
class Cluster:
    n_workers: int = 1
    index: int = 0
    target: str = ''  # the session target: '' in-process, else this worker's server
    config: tf1.ConfigProto | None = None
    timeout: float = 0.0

    @property
    def is_chief(self):
        return self.index == 0

    @property
    def device(self):
        return f'/job:worker/task:{self.index}' if self.n_workers > 1 else None


def from_environment(timeout):
    """The cluster TF_CONFIG describes (starting this worker's server), or one worker."""
    raw = os.environ.get('TF_CONFIG')
    if not raw:
        return Cluster()
    try:
        spec = json.loads(raw)
        workers = spec['cluster']['worker']
        index = int(spec['task']['index'])
        if spec['task'].get('type', 'worker') != 'worker' or not 0 <= index < len(workers):
            raise ValueError('task must be a worker listed in cluster.worker')
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f'TF_CONFIG: expected {{"cluster": {{"worker": [...]}}, "task": '
                        f'{{"type": "worker", "index": N}}}} ({e})') from None
    if len(workers) == 1:
        return Cluster()
    config = tf1.ConfigProto()
    config.experimental.collective_group_leader = '/job:worker/replica:0/task:0'
    server = tf.distribute.Server(tf.train.ClusterSpec({'worker': workers}),
                                  job_name='worker', task_index=index, config=config)
    return Cluster(len(workers), index, server.target, config, timeout)


def all_mean(tensors, cluster, first_key):
    """Each tensor averaged over the workers (instance keys first_key, first_key + 1...).
    A worker that does not answer within cluster.timeout seconds fails the step."""
    if cluster.n_workers == 1:
        return tensors
    return [collective_ops.all_reduce(t, group_size=cluster.n_workers, group_key=1,
                                      instance_key=first_key + i, merge_op='Add',
                                      final_op='Div', timeout=cluster.timeout)
            for i, t in enumerate(tensors)]


def barrier(cluster, instance_key):
    """An op every worker must reach before any goes on, with no time limit. It comes
    before the first step and after the work the chief alone does (saves, samples,
    validation), so neither a worker's start-up nor that work counts against
    cluster.timeout, which bounds only the steps."""
    if cluster.n_workers == 1:
        return tf.no_op()
    return collective_ops.all_reduce(tf.constant(0.0), group_size=cluster.n_workers,
                                     group_key=1, instance_key=instance_key, merge_op='Add',
                                     final_op='Id').op
