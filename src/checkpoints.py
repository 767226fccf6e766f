"""A training run's folder: checkpoints, counter, run state, lock and summaries.

    checkpoint/run1/
      checkpoint, model-<step>.{index,data-*,meta}   TensorFlow's files (relative paths)
      model-<step>.state.json   step, data sampler and noise RNG state, run configuration
      counter                   the newest saved step, as the 2019 train.py wrote it
      hparams.json, encoder.json, vocab.bpe          so the folder is a model directory
      best/                     the model with the lowest validation loss (release layout)
      events.out.tfevents.*     TensorBoard summaries
"""

import dataclasses
import fcntl
import json
import os

import tensorflow as tf

import model_dir
from cli import UserError

tf1 = tf.compat.v1


def write_atomic(path, text):
    """Replace `path` with `text` so that a reader sees the old or the new file, whole."""
    partial = f'{path}.partial'
    with open(partial, 'w', encoding='utf-8') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


class RunDirectory:
    def __init__(self, path, config):
        self.path, self.config = path, config
        self.saver = self.summary = self._lock_file = None

    def lock(self):
        """One writer per run: a second train.py on the same run stops here."""
        os.makedirs(self.path, exist_ok=True)
        self._lock_file = open(os.path.join(self.path, '.lock'), 'a')
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f'{self.path}: another train.py is writing to this run; stop it '
                            'or choose another --run_name') from None

    def _make_saver(self):
        self.saver = tf1.train.Saver(var_list=tf1.global_variables(), max_to_keep=5,
                                     keep_checkpoint_every_n_hours=2,
                                     save_relative_paths=True)
        state = tf.train.get_checkpoint_state(self.path)
        if state:  # retention counts the checkpoints of earlier sessions of this run
            self.saver.recover_last_checkpoints(list(state.all_model_checkpoint_paths))

    def restore(self, sess, restore_from, pretrained, hparams, trainer_state):
        """Load weights (and, resuming a run, optimizer and data state); returns the step."""
        self._make_saver()
        latest = tf.train.latest_checkpoint(self.path)
        if restore_from == 'latest' and latest:
            model_dir.check_checkpoint(latest, hparams)
            print('Loading checkpoint', latest)
            self.saver.restore(sess, latest)
            self._load_state(latest, trainer_state)
            return int(sess.run(tf1.train.get_global_step()))
        if restore_from not in ('latest', 'fresh'):
            pretrained = model_dir.find_checkpoint(restore_from)
            model_dir.check_checkpoint(pretrained, hparams)
        elif restore_from == 'fresh' and latest:
            print(f'warning: --restore_from fresh: starting at step 0; the checkpoints in '
                  f'{self.path} will be replaced as new ones are saved')
        print('Loading checkpoint', pretrained)
        model_dir.restore(sess, pretrained)
        return 0

    def _load_state(self, ckpt, trainer_state):
        try:
            with open(f'{ckpt}.state.json', encoding='utf-8') as f:
                state = json.load(f)
        except FileNotFoundError:
            print(f'warning: {ckpt}.state.json is missing: weights and optimizer restored, '
                  'the data order starts afresh')
            return
        saved = state.get('config', {})
        for name, value in dataclasses.asdict(self.config).items():
            if name in saved and saved[name] != value:
                print(f'warning: --{name} was {saved[name]!r} in this run, now {value!r}')
        trainer_state.load_state(state['trainer'])

    def save(self, sess, step, hparams, vocab_dir, trainer_state):
        prefix = os.path.join(self.path, f'model-{step}')
        print('Saving', prefix)
        state = {'step': step, 'config': dataclasses.asdict(self.config),
                 'trainer': trainer_state.state()}
        write_atomic(f'{prefix}.state.json', json.dumps(state))
        self.saver.save(sess, os.path.join(self.path, 'model'), global_step=step)
        write_atomic(os.path.join(self.path, 'counter'), f'{step}\n')
        if not os.path.exists(os.path.join(self.path, 'hparams.json')):
            write_atomic(os.path.join(self.path, 'hparams.json'), hparams.to_json())
            model_dir.copy_vocabulary(vocab_dir, self.path)
        self._remove_orphan_states()

    def _remove_orphan_states(self):
        """Drop the state files of checkpoints the retention policy deleted."""
        for name in os.listdir(self.path):
            if name.endswith('.state.json'):
                prefix = os.path.join(self.path, name[:-len('.state.json')])
                if not os.path.exists(f'{prefix}.index'):
                    os.remove(os.path.join(self.path, name))

    def best_loss(self):
        try:
            with open(os.path.join(self.path, 'best', 'best.json'), encoding='utf-8') as f:
                return json.load(f)['val_loss']
        except FileNotFoundError:
            return float('inf')

    def save_best(self, sess, step, val_loss, hparams, vocab_dir):
        best = os.path.join(self.path, 'best')
        print(f'Saving {best} (validation loss {val_loss:.4f} at step {step})')
        model_dir.save(sess, best, hparams, vocab_dir)
        write_atomic(os.path.join(best, 'best.json'),
                     json.dumps({'step': step, 'val_loss': val_loss}) + '\n')

    def log_scalars(self, step, **values):
        if self.summary is None:
            with tf.Graph().as_default():  # FileWriter refuses eager mode
                self.summary = tf1.summary.FileWriter(self.path)
        self.summary.add_summary(tf1.Summary(value=[
            tf1.Summary.Value(tag=tag, simple_value=float(value))
            for tag, value in values.items()]), step)
