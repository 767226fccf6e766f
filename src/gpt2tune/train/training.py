"""Fine-tuning GPT-2: the run behind train.py (check, load, write) and its loop (Trainer.run).

    train(TrainConfig(dataset='input-text.txt.npz', sample_every=250, save_every=250))

(TrainConfig is in train_config.py, the step's graph in train_graph.py, optimizers and
schedules in optimizers.py, the run folder in checkpoints.py, validation and samples in
evaluation.py, the figures and sample files in run_log.py.)

Writes checkpoint/<run>/model-<step>.* (model variables under the release names, plus
optimizer state), counter, hparams and vocabulary (so the run folder is itself a model
directory), TensorBoard summaries and metrics.jsonl, loss.png at the end, and
samples/<run>/samples-<step>.
"""

import collections
import os
import time

import numpy as np
import tensorflow as tf

from gpt2tune.data.data_sampler import add_noise, load_data, rng_state, set_rng_state
from gpt2tune.errors import UserError, user_path
from gpt2tune.model import model_dir
from gpt2tune.model.hparams import variable_shapes
from gpt2tune.train import checkpoints, distributed, loss_plot, run_log, train_memory
from gpt2tune.train.evaluation import Evaluation
from gpt2tune.train.optimizers import learning_rate_at
from gpt2tune.train.progress import Progress
from gpt2tune.train.stop_flag import StopFlag
from gpt2tune.train.train_config import check_config, check_trained, sample_options
from gpt2tune.train.train_graph import open_train_step, step_choices

tf1 = tf.compat.v1


# What one training step reports: its loss and gradient norm, the tokens trained on, whether
# any worker asked to stop, and for float16 whether the gradients overflowed at loss_scale
# (the step was then skipped).
StepResult = collections.namedtuple(
    'StepResult', 'loss grad_norm tokens stop_agreed overflow loss_scale')


class Trainer:
    """One training run, set up in three stages: resolve and check everything, then load
    (data, graph, weights), then touch disk. A refused run writes nothing."""

    def __init__(self, c):
        self.c = c
        self.folder = self.sess = self.summaries = None
        try:
            self._check()
            self._load()
            self.folder.open()
            # a replaced run's best is aside by now
            self.evaluation.best_loss = self.folder.best_loss()
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.sess is not None:
            self.sess.close()
        if self.summaries is not None:
            self.summaries.close()
        if self.folder is not None:
            self.folder.close()

    def _check(self):
        """Settings, model, sampling options, memory, workers, data: nothing written."""
        c = self.c
        check_config(c)
        self.model_dir = model_dir.load(c.model_name, c.models_dir,
                                    allow_special=not c.endoftext_as_text)
        hparams = self.model_dir.hparams
        check_trained(c, hparams.n_layer, variable_shapes(hparams))
        self.sampling = sample_options(c, hparams)
        train_memory.check_optimizer_memory(c, hparams)
        self.cluster = distributed.from_environment(c.collective_timeout)
        if self.cluster.n_workers > 1 and c.seed is None:
            raise UserError('--seed: needed with several workers, which must all draw the '
                            'same batches')
        self.choices = step_choices(c, hparams)
        folder = checkpoints.RunFolder if self.cluster.is_chief else checkpoints.ReadOnlyRunFolder
        self.folder = folder(c, self.model_dir, self.choices.adapters)
        self.folder.lock()
        self.folder.check_resume()
        self.summaries = (run_log.Summaries(self.folder.path) if self.cluster.is_chief
                          else run_log.NoSummaries())
        self.samples = run_log.Samples(os.path.join(user_path(c.sample_dir), c.run_name))
        self.sampler, self.val_batches, self.dataset_tokens = load_data(
            c, self.model_dir.encoder, hparams)

    def _load(self):
        """The graph and session; weights, optimizer and data state restored."""
        c, hparams = self.c, self.model_dir.hparams
        self.noise_rs = np.random.RandomState(None if c.seed is None else c.seed + 1)
        self.tokens_seen = 0  # by all workers, for the epoch
        choices = self.choices
        print(f'memory_saving_gradients: {"on" if choices.recompute else "off"} '
              f'({choices.recompute_reason})')
        held = ('float32 weights' if choices.dtype == tf.float32 or choices.adapters is None
                else f'frozen matrices in {choices.dtype.name}, the rest float32')
        print(f'precision: {choices.dtype.name} matrix products, {held} '
              f'({choices.precision_reason})')
        if choices.adapters is not None:
            print(choices.adapters.describe(hparams))
        opened = open_train_step(hparams, c, choices, self.cluster)
        self.graph, self.sess, self.g = opened.graph, opened.sess, opened.g
        self.evaluation = Evaluation(c, self.sess, self.g, self.model_dir, choices.adapters,
                                     self.folder, self.summaries, self.val_batches,
                                     self.sampling, self.samples)
        with self.graph.as_default(), tf.device(self.cluster.device):
            self.step, state = self.folder.restore(self.sess)
            if state is not None:
                self.load_state(state)

    def state(self):
        """What a checkpoint needs besides the variables to resume exactly."""
        return {'sampler': self.sampler.state(), 'noise': rng_state(self.noise_rs),
                'tokens_seen': self.tokens_seen, 'stale_evaluations': self.evaluation.stale}

    def load_state(self, state):
        try:
            self.sampler.load_state(state['sampler'])
            set_rng_state(self.noise_rs, state['noise'])
            # Runs saved before these were kept: the epoch as if every window were full.
            window = self.c.batch_size * self.c.accumulate_gradients * self.cluster.n_workers
            self.tokens_seen = int(state.get('tokens_seen',
                                             self.step * window * self.model_dir.hparams.n_ctx))
            self.evaluation.stale = int(state.get('stale_evaluations', 0))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f'step {self.step}: the saved data order or noise state is '
                            f'incomplete ({type(e).__name__}: {e}); --restore_from fresh '
                            'starts over') from None

    def next_batch(self):
        """This worker's share of the global batch, which every worker draws alike."""
        n, i, b = self.cluster.n_workers, self.cluster.index, self.c.batch_size
        tokens, mask = self.sampler.batch(b * n, self.model_dir.hparams.n_ctx)
        noisy = add_noise(tokens, self.noise_rs, self.c.noise, self.model_dir.hparams.n_vocab)
        mine = slice(i * b, (i + 1) * b)
        return {self.g.context: tokens[mine], self.g.context_in: noisy[mine],
                self.g.loss_mask: mask[mine]}

    def train_step(self, stop_requested):
        """One optimizer step, counted with its tokens; returns its StepResult."""
        try:
            result = self._train_step(1.0 if stop_requested else 0.0)
        except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError,
                tf.errors.CancelledError, tf.errors.AbortedError,
                tf.errors.InternalError) as e:
            if self.cluster.n_workers == 1:
                raise
            raise UserError(f'worker {self.cluster.index}: step {self.step + 1} failed, '
                            'another worker stopped or cannot be reached '
                            f'({type(e).__name__}); restart every worker to resume from '
                            'the last checkpoint') from None
        self.step += 1
        self.tokens_seen += result.tokens * self.cluster.n_workers
        return result

    def _train_step(self, stop_in):
        g, c = self.g, self.c
        fetches = (g.train_op, g.step_loss, g.grad_norm, g.stop_any, g.overflow, g.loss_scale)
        feed = {g.lr: learning_rate_at(c, self.step), g.stop_in: stop_in}
        if c.accumulate_gradients == 1:
            batch = self.next_batch()
            tokens = int(batch[g.loss_mask].sum())
            feed.update(batch)
        else:
            self.sess.run(g.reset)
            tokens = 0
            for _ in range(c.accumulate_gradients):
                batch = self.next_batch()
                self.sess.run(g.accumulate, batch)
                tokens += int(batch[g.loss_mask].sum())
        _, loss, norm, stop_any, overflow, scale = self.sess.run(fetches, feed)
        return StepResult(loss, norm, tokens, stop_any > 0, bool(overflow), float(scale))

    def wait_for_chief(self):
        """After the chief's own work, and before the first step after every worker's
        start-up: every worker goes on together, with no time limit."""
        if self.cluster.n_workers > 1:
            self.sess.run(self.g.wait_for_chief)

    def save(self):
        self.folder.save(self.sess, self.step, self.state())

    def run(self, stop):
        """The loop: steps until c.steps or a stop agreed by every worker, then the last
        save and the loss picture. Returns the step reached."""
        c = self.c
        if c.val_every and self.folder.writes:  # the weights resumed from
            self.evaluation.validate(self.step)
        self.wait_for_chief()  # every worker has started: start-up never counts as a step
        stop.saved = self.step
        progress = Progress(c.steps, self.step, self.dataset_tokens)
        with progress.shown():
            while not (c.steps and self.step >= c.steps):
                if stop.requested and self.cluster.n_workers == 1:
                    break  # several workers first agree on it through a step
                step_start = time.time()
                result = self.train_step(stop.requested)
                self.report_step(stop, progress, result, time.time() - step_start)
                self.chief_work(stop)
                if result.stop_agreed:
                    stop.requested = True
                    break
                if c.early_stopping and self.evaluation.stale >= c.early_stopping:
                    print(f'early stopping: no better validation loss in {c.early_stopping} '
                          f'evaluations (best {self.evaluation.best_loss:.4f}, kept in '
                          f'{self.folder.path}/best)')
                    stop.early = True
                    stop.requested = True  # several workers agree on it through a step
        if stop.requested and not stop.early:
            print('interrupted')
        if stop.saved != self.step:
            with stop.saving_now():
                self.save()
        stop.finished = True
        if self.folder.writes and self.step > progress.first_step:
            loss_plot.plot_finished_run(self.folder.path)
        return self.step

    def report_step(self, stop, progress, result, seconds):
        """The step's line or bar and its figures; a float16 overflow is reported (the
        step was skipped), a loss that is not finite otherwise stops the run."""
        if result.overflow and result.loss_scale > 1:
            print(f'step {self.step}: gradients overflowed float16 at loss scale '
                  f'{result.loss_scale:g}; step skipped, scale now {result.loss_scale / 2:g}')
            self.summaries.log(self.step, loss_scale=result.loss_scale / 2)
            return
        if not np.isfinite(result.loss) or result.overflow:
            raise UserError(f'step {self.step}: loss is {result.loss}; training stopped and '
                            f'nothing saved (newest checkpoint: step {stop.saved}). Lower '
                            '--learning_rate or set --grad_clip' +
                            (', or use --precision float32' if result.overflow else ''))
        tokens_per_second = result.tokens / seconds
        progress.update(self.step, result.loss, tokens_per_second, self.tokens_seen)
        self.summaries.log(self.step, loss=result.loss,
                           learning_rate=learning_rate_at(self.c, self.step - 1),
                           grad_norm=result.grad_norm, tokens_per_second=tokens_per_second)

    def chief_work(self, stop):
        """This step's saves, samples and validation, which the chief alone does (the
        other workers would discard them); then the workers go on together."""
        c, step = self.c, self.step
        due = [step % c.save_every == 0, step % c.sample_every == 0,
               bool(c.val_every) and step % c.val_every == 0]
        if due[0]:
            with stop.saving_now():
                self.save()
            stop.saved = step
        if due[1] and self.folder.writes:
            self.evaluation.write_samples(step)
        if due[2] and self.folder.writes:
            self.evaluation.evaluate(step)
        if any(due):
            self.wait_for_chief()


def train(c, stop=None):
    """Train until c.steps (0: until SIGINT/SIGTERM), then save. `stop` is a StopFlag.
    Returns the step reached."""
    # Installed from start to end: a signal while loading, or after the last save while
    # closing, asks for a clean stop too, instead of killing the process.
    with (stop or StopFlag()).installed() as stop:
        t = Trainer(c)
        try:
            with t.graph.as_default():
                return t.run(stop)
        finally:
            t.close()
