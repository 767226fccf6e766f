"""Resuming a training run from its own checkpoints: the newest that loads whole (a
damaged one is skipped, saying so; another model's never), all its variables, its run
state, and warnings for settings changed since (checkpoints.py's RunFolder.restore asks).
"""

import dataclasses
import filecmp
import json
import os

import tensorflow as tf

from gpt2tune.errors import UserError
from gpt2tune.model import lora, model_dir
from gpt2tune.model.release import VOCAB_FILES

tf1 = tf.compat.v1


class Resume:
    """A RunFolder's resumption, its saver and the variables it saves made already."""

    def __init__(self, folder):
        self.folder = folder

    def resume(self, sess, steps):
        """Restore the newest of `steps` whose checkpoint loads whole, saying what was
        skipped: (step, trainer state), the state None for a 2019 checkpoint."""
        self.check_vocabulary()
        skipped = []
        for step in steps:
            prefix = os.path.join(self.folder.path, f'model-{step}')
            try:
                lora.check_resume(prefix, model_dir.stored_variables(prefix), self.folder.adapters,
                                  self.folder.model_dir.checkpoint)
                # A LoRA run's base is the one it resumes on (checked just above).
                model_dir.check_checkpoint(prefix, self.folder.model_dir.hparams,
                                           base=self.folder.model_dir.checkpoint)
                state = self._read_state(prefix)
                print('Loading checkpoint', prefix)
                if state is None:  # written by the 2019 train.py: weights only
                    model_dir.restore(sess, prefix)
                    sess.run(tf1.train.get_global_step().assign(step))
                else:
                    self._restore_all(sess, prefix)
            except (model_dir.CheckpointMismatch, lora.RunMismatch):
                raise  # another model, not a damaged file: never skip to an older one
            except (tf.errors.OpError, ValueError, UserError) as e:
                reason = str(e).strip().splitlines()[0][:200]
                print(f'warning: skipping damaged checkpoint {prefix} ({reason})')
                skipped.append(prefix)
                continue
            if skipped:
                print(f'Resuming from {prefix} (step {step}); skipped {", ".join(skipped)}')
            if state is None:
                return step, None
            self._warn_changes(state)
            return step, state['trainer']
        raise UserError(f'{self.folder.path}: no checkpoint could be loaded (tried '
                        f'{", ".join(skipped)}); pass --restore_from fresh to start over')

    def _restore_all(self, sess, prefix):
        """Every variable the checkpoint holds. One it lacks (a loss scale or optimizer
        state the run did not have before a change of --precision or --optimizer) keeps
        its initial value, with a warning."""
        if self.folder.adapters is not None:  # the base, checked to be the one trained on
            model_dir.restore(sess, self.folder.model_dir.checkpoint)
        stored = dict(tf.train.list_variables(prefix))
        variables = self.folder.saved
        missing = [v.op.name for v in variables if v.op.name not in stored]
        if missing:
            print(f'warning: {prefix} has no {", ".join(missing[:4])}'
                  f'{" ..." if len(missing) > 4 else ""}: starting those afresh')
            tf1.train.Saver([v for v in variables if v.op.name in stored]).restore(sess, prefix)
        else:
            self.folder.saver.restore(sess, prefix)

    def _read_state(self, prefix):
        """The run state saved with a checkpoint; None for a 2019 checkpoint (no optimizer
        state). A checkpoint of ours whose state is unreadable counts as damaged."""
        stored = dict(tf.train.list_variables(prefix))
        try:
            with open(f'{prefix}.state.json', encoding='utf-8') as f:
                state = json.load(f)
            if not isinstance(state, dict) or not isinstance(state.get('trainer'), dict):
                raise UserError(f'{prefix}.state.json has no "trainer" record')
            return state
        except FileNotFoundError:
            if 'global_step' in stored:
                raise UserError(f'{prefix}.state.json is missing') from None
            print(f'warning: {prefix} has no optimizer or data state (written by the 2019 '
                  'train.py?): loading its weights, the optimizer starts afresh')
            return None
        except json.JSONDecodeError:
            raise UserError(f'{prefix}.state.json is not valid JSON') from None

    def _warn_changes(self, state):
        saved = state.get('config', {})
        for name, value in dataclasses.asdict(self.folder.config).items():
            if name in saved and saved[name] != value:
                print(f'warning: --{name} was {saved[name]!r} in this run, now {value!r}')

    def check_vocabulary(self):
        """A run continues with the vocabulary it was trained with, or not at all."""
        for name in VOCAB_FILES:
            ours = os.path.join(self.folder.path, name)
            source = os.path.join(self.folder.model_dir.path, name)
            if os.path.isfile(ours) and not filecmp.cmp(ours, source, shallow=False):
                raise UserError(f'{ours} differs from {source}: this run was trained with '
                                'another vocabulary')
