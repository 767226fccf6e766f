"""What a training run writes besides its checkpoints: the figures of its steps
(metrics.jsonl and TensorBoard's summaries, in the run folder) and its samples
(samples/<run>/samples-<step>). The chief writes them; the other workers write nothing.

    summaries = Summaries('checkpoint/run1')
    summaries.log(250, loss=2.9, learning_rate=2e-5)
    Samples('samples/run1').write(250, texts)

No TensorFlow at import: loss_plot.py reads metrics.jsonl without it.
"""

import json
import os

from gpt2tune.atomic_files import write_atomic

METRICS = 'metrics.jsonl'  # a JSON record per line: {"step": 250, "loss": 2.9, ...}


class Summaries:
    """A run's figures, for TensorBoard and for metrics.jsonl, which needs nothing to read
    (loss_plot.py, pandas). After a resume the steps redone appear again; the later record
    counts."""

    def __init__(self, path):
        self.path = path
        self.writer = None  # TensorBoard's, made at the first record

    def log(self, step, **values):
        record = {'step': step, **{k: float(v) for k, v in values.items()}}
        with open(os.path.join(self.path, METRICS), 'a', encoding='utf-8') as f:
            f.write(json.dumps(record) + '\n')
        import tensorflow as tf  # here: the chief of a training run has it loaded
        tf1 = tf.compat.v1
        if self.writer is None:
            with tf.Graph().as_default():  # FileWriter refuses eager mode
                self.writer = tf1.summary.FileWriter(self.path)
        self.writer.add_summary(tf1.Summary(value=[
            tf1.Summary.Value(tag=tag, simple_value=float(value))
            for tag, value in values.items()]), step)
        self.writer.flush()  # a killed run keeps the curve up to its last step

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.writer = None


class NoSummaries:
    """The other workers' Summaries: their figures are the chief's."""

    def log(self, step, **values):
        pass

    def close(self):
        pass


class Samples:
    """The samples a run writes as it trains, one file per step."""

    def __init__(self, path):
        self.path = path  # samples/<run>

    def write(self, step, texts):
        os.makedirs(self.path, exist_ok=True)
        write_atomic(os.path.join(self.path, f'samples-{step}'), '\n'.join(texts))
