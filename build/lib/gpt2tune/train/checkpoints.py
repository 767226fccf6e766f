"""A training run's folder: its lock, checkpoints, counter, run state and best model
(what else a run writes there, and its samples, are run_log.py's).

    checkpoint/run1/
      checkpoint, model-<step>.{index,data-*,meta}   TensorFlow's files (relative paths)
      model-<step>.state.json   step, data sampler and noise RNG state, run configuration
      counter                   the newest saved step, as the 2019 train.py wrote it
      hparams.json, encoder.json, vocab.bpe          so the folder is a model directory
      best/                     the model with the lowest validation loss (release layout)
      lora.json                 with --lora_rank: the adapters and the base they apply to
      events.out.tfevents.*, metrics.jsonl, loss.png   the run's figures (run_log.py)
"""

import dataclasses
import fcntl
import json
import os
import re
import shutil
import time

import tensorflow as tf
from google.protobuf import text_format

from gpt2tune.atomic_files import sync_directory, write_atomic
from gpt2tune.errors import UserError, user_path
from gpt2tune.model import lora, model_dir
from gpt2tune.model.release import HPARAMS
from gpt2tune.train.resume import Resume
from gpt2tune.train.train_config import is_trained

tf1 = tf.compat.v1


class RunFolder:
    """The chief's run folder, checkpoint/<run>, written by one train.py at a time.
    Training sees save(sess, step, state) and restore(sess) -> (step, state); `state` is
    the trainer's own (data order, noise), stored as JSON."""
    writes = True

    def __init__(self, config, model_dir, adapters):
        self.config = config  # a TrainConfig
        self.model_dir = model_dir  # the model_dir.ModelDir the run trains
        self.adapters = adapters  # the config's lora.Adapters, or None
        self.path = os.path.join(user_path(config.checkpoint_dir), config.run_name)
        self.saver = self._lock_fd = None
        # A start from other weights over an earlier run, whose files move aside.
        self.replacing = config.restore_from != 'latest' and bool(self.saved_steps())

    def lock(self):
        """One writer per run: a second train.py on an existing run stops here, before
        anything is loaded. A new run's folder is made and locked by `open`."""
        if os.path.isdir(self.path):
            self._lock_fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(f'{self.path}: another train.py is writing to this run; '
                                'stop it or choose another --run_name') from None

    def check_resume(self):
        """Before anything loads: the newest checkpoint continues this run (LoRA or not,
        the same adapters and base). A damaged one is left for `restore` to skip."""
        steps = self.saved_steps()
        if self.config.restore_from != 'latest' or not steps:
            return
        prefix = os.path.join(self.path, f'model-{steps[0]}')
        try:
            lora.check_resume(prefix, model_dir.stored_variables(prefix), self.adapters,
                              self.model_dir.checkpoint)
        except lora.RunMismatch:
            raise
        except UserError:
            pass

    def open(self):
        """Make the folder (checked and loaded by now), move the files of an earlier run
        being replaced aside, and repair what a killed save left."""
        os.makedirs(self.path, exist_ok=True)
        if self._lock_fd is None:
            self.lock()
        if self.replacing:
            self._move_aside()
        self._repair()

    def _repair(self):
        """Remove TensorFlow's temporary shards, .partial files and folders, states of
        unfinished checkpoints; put back a best/ caught between its renames."""
        best = os.path.join(self.path, 'best')
        if os.path.isdir(f'{best}.old') and not os.path.isdir(best):
            os.replace(f'{best}.old', best)  # killed between save_best's two renames
        for name in os.listdir(self.path):
            path = os.path.join(self.path, name)
            killed_save = name.startswith('model-') and ('_temp' in name or '.tempstate' in name)
            if killed_save or name.endswith('.partial') or name == 'best.old':
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        self._remove_orphan_states()

    def close(self):
        """Release the run: the lock let go."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        self._lock_fd = None

    def _move_aside(self):
        """Everything of the run being replaced goes into replaced-<time>/, so that
        `latest` can only mean the new run and nothing is silently lost."""
        names = [n for n in os.listdir(self.path) if not n.startswith('replaced-')]
        if not names:
            return
        aside = os.path.join(self.path, time.strftime('replaced-%Y%m%d-%H%M%S'))
        os.makedirs(aside)
        for name in names:
            os.replace(os.path.join(self.path, name), os.path.join(aside, name))
        sync_directory(self.path)
        print(f'{self.path}: the earlier run\'s files are in {aside}')

    def restore(self, sess):
        """Load weights (and, resuming this run, optimizer state) into sess. Returns (step,
        trainer state), the state None when starting from a model or a 2019 checkpoint."""
        restore_from, steps = self.config.restore_from, self.saved_steps()
        hours = self.config.keep_checkpoint_every_hours or float('inf')
        self.saved = self._saved_variables()
        self.saver = tf1.train.Saver(var_list=self.saved,
                                     max_to_keep=self.config.max_checkpoints,  # 0: all
                                     keep_checkpoint_every_n_hours=hours,
                                     save_relative_paths=True)
        if not self.replacing:  # retention counts the checkpoints of earlier sessions
            self.saver.recover_last_checkpoints(self._listed_checkpoints())
        if restore_from == 'latest' and steps:
            return Resume(self).resume(sess, steps)
        if restore_from == 'latest' and self.counter() > 0:
            raise UserError(f'{self.path}/counter says step {self.counter()} but no checkpoint '
                            'is left to resume from; pass --restore_from fresh to start over')
        pretrained = self.model_dir.checkpoint
        if restore_from not in ('latest', 'fresh'):
            pretrained = model_dir.find_checkpoint(user_path(restore_from))
        if self.replacing:
            print(f'warning: --restore_from {restore_from}: starting at step 0; the earlier '
                  f'run in {self.path} (up to step {steps[0]}) moves into replaced-<time>/')
        model_dir.check_checkpoint(pretrained, self.model_dir.hparams)
        print('Loading checkpoint', pretrained)
        model_dir.restore(sess, pretrained)
        return 0, None

    def saved_steps(self):
        """Steps with checkpoint files in the run folder, newest first (complete or not)."""
        steps = set()
        for name in os.listdir(self.path) if os.path.isdir(self.path) else []:
            match = re.fullmatch(r'model-(\d+)\.(index|data-\d+-of-\d+)', name)
            if match:
                steps.add(int(match.group(1)))
        return sorted(steps, reverse=True)

    def counter(self):
        try:
            with open(os.path.join(self.path, 'counter'), encoding='utf-8') as f:
                return int(f.read())
        except (FileNotFoundError, ValueError):
            return 0

    def _saved_variables(self):
        """What the run's checkpoints hold: every variable but a LoRA run's frozen base
        weights (lora.json names their checkpoint instead)."""
        if self.adapters is None:
            return tf1.global_variables()
        frozen = {v.name for v in model_dir.model_variables()
                  if not is_trained(self.config, v.name, self.model_dir.hparams.n_layer)}
        return [v for v in tf1.global_variables() if v.name not in frozen]

    def save(self, sess, step, state):
        """Checkpoint `step` with the trainer's `state`. Order matters for a kill at any
        moment: the state file first (an orphan is removed later), then TensorFlow's
        files, which become `latest` only once complete, then the counter."""
        prefix = os.path.join(self.path, f'model-{step}')
        print('Saving', prefix)
        record = {'step': step, 'config': dataclasses.asdict(self.config), 'trainer': state}
        try:
            write_atomic(f'{prefix}.state.json', json.dumps(record))
            if self.adapters is not None:
                lora.write_config(self.path, self.adapters, self.model_dir.checkpoint)
            self.saver.save(sess, os.path.join(self.path, 'model'), global_step=step)
            write_atomic(os.path.join(self.path, 'counter'), f'{step}\n')
            if not os.path.exists(os.path.join(self.path, HPARAMS)):
                model_dir.copy_vocabulary(self.model_dir.path, self.path)
                write_atomic(os.path.join(self.path, HPARAMS),
                             self.model_dir.hparams.to_json())
        except (OSError, tf.errors.OpError) as e:
            self._repair()  # removes the partial files
            latest = tf.train.latest_checkpoint(self.path)
            reason = (getattr(e, 'strerror', None) or getattr(e, 'message', None)
                      or str(e)).strip().splitlines()[0][:200]
            raise UserError(f'{prefix}: saving failed ({reason}); the newest complete '
                            f'checkpoint is still {latest}') from None
        self._remove_orphan_states()

    def _remove_orphan_states(self):
        """Drop the state files of checkpoints that were deleted or never completed (the
        index is the last file TensorFlow writes)."""
        for name in os.listdir(self.path):
            prefix = os.path.join(self.path, name[:-len('.state.json')])
            if name.endswith('.state.json') and not os.path.exists(f'{prefix}.index'):
                os.remove(os.path.join(self.path, name))

    def _listed_checkpoints(self):
        try:
            state = tf.train.get_checkpoint_state(self.path)
        except (text_format.ParseError, ValueError):  # a garbage state file lists nothing
            return []
        return list(state.all_model_checkpoint_paths) if state else []

    def best_loss(self):
        try:
            with open(os.path.join(self.path, 'best', 'best.json'), encoding='utf-8') as f:
                return json.load(f)['val_loss']
        except FileNotFoundError:
            return float('inf')

    def save_best(self, sess, step, val_loss):
        """Replace best/ whole: written as best.partial/, then swapped in by renames (a
        kill between them leaves best.old/, which `open` puts back)."""
        best = os.path.join(self.path, 'best')
        print(f'Saving {best} (validation loss {val_loss:.4f} at step {step})')
        shutil.rmtree(f'{best}.partial', ignore_errors=True)
        variables = None  # the model's weights; for LoRA what it trains (lora.json: the rest)
        if self.adapters is not None:
            weights = {v.name for v in model_dir.model_variables() + model_dir.adapter_variables()}
            variables = [v for v in self.saved if v.name in weights]
        model_dir.save(sess, f'{best}.partial', self.model_dir.hparams, self.model_dir.path,
                       variables)
        if self.adapters is not None:
            lora.write_config(f'{best}.partial', self.adapters, self.model_dir.checkpoint)
        write_atomic(os.path.join(f'{best}.partial', 'best.json'),
                     json.dumps({'step': step, 'val_loss': val_loss}) + '\n')
        if os.path.isdir(best):
            os.replace(best, f'{best}.old')
        os.replace(f'{best}.partial', best)
        sync_directory(self.path)
        shutil.rmtree(f'{best}.old', ignore_errors=True)


class ReadOnlyRunFolder(RunFolder):
    """The chief's run folder as the other workers see it: they restore from its
    checkpoints and write nothing."""
    writes = False

    def lock(self):
        pass

    def open(self):
        pass

    def save(self, sess, step, state):
        pass

    def save_best(self, sess, step, val_loss):
        pass
