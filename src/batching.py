"""Continuous batching: one thread decodes every request in flight together, one token
per row per step. A request joins the batch at the next step (its prompts prefilled
together with any others arriving) and leaves it as soon as it is done or cancelled, so
a short request is never held up by a long one.

    engine = Engine(slot_decoder.SlotDecoder(weights, hparams, 16), encoder, max_queue=64)
    engine.start()
    job = Job([[464, 3290]], n=2, options=checked_options, seed=1, encoder=encoder,
              on_event=lambda pieces, finished: ...)   # called on the engine's thread
    engine.submit(job)          # QueueFull when max_queue requests wait already
    job.cancel()                # the client went away: its rows leave at the next step
    engine.stop()

Each request draws from its own `np.random.default_rng(seed)`, one draw per row per
step as sample.decode_steps does for the same rows (ended rows included), and slides
its window past the context as decode_steps does: so a completion equals the API's
`GPT2.load(path, seed=seed, batch_size=n).generate(prompt, nsamples=n, ...)`, alone or
under load.

Test-only environment variables (never set in use):
GPT2_SERVE_TEST_PAUSE       STEPS:PATH: after STEPS steps the engine takes no further step
                            until the file PATH exists, so that a test disconnects or stops
                            the server while a request is surely still running;
GPT2_SERVE_TEST_HOLD        the engine starts no step until this many requests have been
                            submitted (accepted or refused), so that requests sent one
                            after another join the same step.
"""

import os
import sys
import threading
import time
import traceback

import numpy as np

import sample
from generation import TextStream


class QueueFull(Exception):
    """max_queue requests are waiting already."""


class Row:
    """One choice of a request: a prompt and the tokens sampled after it."""

    def __init__(self, index, prompt, encoder, options):
        self.index, self.prompt = index, prompt
        self.new, self.end = [], None  # end: sample.Stopper.cut's (tokens kept, text)
        self.text = TextStream(encoder, options.stop)
        self.finish_reason = None  # 'stop' or 'length' once done


class Job:
    """A completion request: `n` rows for each prompt (token lists), choice i being
    prompt i // n. `on_event(pieces, finished)` is called on the engine's thread after
    each of its steps with [(choice index, new text)], finished True at its last."""

    def __init__(self, prompts, n, options, seed, encoder, on_event):
        self.rows = [Row(i, p, encoder, options) for i, p in
                     enumerate(p for p in prompts for _ in range(n))]
        self.options, self.on_event = options, on_event
        self.rng = np.random.default_rng(seed)
        self.stopper = sample.Stopper(encoder, options)
        self.seen = None  # [rows, n_vocab] tokens in each row, for the repetition penalty
        self.steps, self.cancelled, self.error = 0, False, None

    def cancel(self):
        self.cancelled = True

    def live(self):
        return [r for r in self.rows if r.finish_reason is None]


class _Draws:
    """Stands in for an rng in sample.choose: the draws of the rows still going, made
    for every row of the request in row order as decode_steps makes them."""

    def __init__(self, values):
        self.values = iter(values.tolist())

    def random(self):
        return next(self.values)


class Engine:
    """Runs Jobs on a SlotDecoder from one thread; see the module's docstring."""

    def __init__(self, decoder, encoder, *, max_queue, on_tokens=None):
        self.decoder, self.encoder, self.max_queue = decoder, encoder, max_queue
        self.on_tokens = on_tokens or (lambda n: None)
        self.waiting, self.running = [], []
        self.cond = threading.Condition()
        self.stopping, self.submitted = False, 0
        steps, _, self.release = os.environ.get('GPT2_SERVE_TEST_PAUSE', '').partition(':')
        self.pause_after, self.steps_taken = int(steps or -1), 0
        self.hold = int(os.environ.get('GPT2_SERVE_TEST_HOLD', 0))
        self.thread = threading.Thread(target=self._run, name='batching', daemon=True)

    def start(self):
        self.thread.start()

    def submit(self, job):
        """Queue a job; QueueFull when max_queue wait already. A job of more rows than
        the decoder has must not be submitted."""
        with self.cond:
            self.submitted += 1
            self.cond.notify()
            if len(self.waiting) >= self.max_queue:
                raise QueueFull
            self.waiting.append(job)

    def rows(self):
        return len(self.decoder.rows)

    def queued(self):
        return len(self.waiting)

    def busy(self):
        return bool(self.waiting or self.running)

    def stop(self):
        """Cancel what is left and end the thread."""
        with self.cond:
            self.stopping = True
            for job in self.waiting + self.running:
                job.cancel()
            self.cond.notify()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self):
        while True:
            with self.cond:
                while not self.stopping and (not self.busy() or self.submitted < self.hold):
                    self.cond.wait()
                if self.stopping and not self.busy():
                    return
                joining = self._admit()
            try:
                self._step(joining)
            except Exception as e:  # a fault of ours: fail the requests, go on serving
                traceback.print_exc(file=sys.stderr)
                for job in dict.fromkeys(self.running + joining):
                    self._finish(job, error=e)
            self.steps_taken += 1
            while self.steps_taken == self.pause_after and not os.path.exists(self.release):
                time.sleep(0.01)

    def _admit(self):
        """The waiting jobs that fit in the rows left, first come first served."""
        for job in [j for j in self.waiting if j.cancelled]:
            self.waiting.remove(job)
            self._finish(job)
        free = len(self.decoder.lengths) - len(self.decoder.rows)
        joining = []
        while self.waiting and len(self.waiting[0].rows) <= free:
            free -= len(self.waiting[0].rows)
            joining.append(self.waiting.pop(0))
        return joining

    def _step(self, joining):
        """The joining jobs' prompts prefilled and their first token sent at once (the
        time to a first token is then one prefill, not a prefill and a step of every
        row); then one more token for every row, the joining ones' second."""
        for job in [j for j in self.running if j.cancelled]:
            self._finish(job)
        new_rows = [row for job in joining for row in job.rows]
        if new_rows:
            logits = dict(zip(new_rows, self.decoder.add(new_rows, [r.prompt for r in
                                                                     new_rows]), strict=True))
            self.running += joining
            for job in joining:
                self._choose(job, logits)
        if self.decoder.rows:
            for row in self.decoder.rows:
                if self.decoder.length(row) == self.decoder.n_ctx:
                    window = (row.prompt + row.new)[-(self.decoder.n_ctx // 2):]
                    self.decoder.reset(row, window[:-1])
            tokens = [row.new[-1] for row in self.decoder.rows]
            logits = dict(zip(self.decoder.rows, self.decoder.step(tokens), strict=True))
            for job in list(self.running):
                self._choose(job, logits)

    def _choose(self, job, logits):
        """The next token of each live row of `job`; its events; its end."""
        options, live = job.options, job.live()
        draws = job.rng.random(len(job.rows))[[r.index for r in live]]
        batch = np.stack([logits[r] for r in live])
        if options.repetition_penalty != 1 and job.seen is None:
            job.seen = np.zeros([len(job.rows), batch.shape[1]], bool)
            for row in job.rows:
                job.seen[row.index, row.prompt] = True
        seen = None if job.seen is None else job.seen[[r.index for r in live]]
        tokens = sample.choose(batch, options, _Draws(draws), seen)
        job.steps += 1
        last = job.steps == options.length
        for row, token in zip(live, tokens.tolist(), strict=True):
            row.new.append(token)
            row.end = job.stopper.cut(row.new)
            if job.seen is not None:
                job.seen[row.index, token] = True
            if row.end is not None or last:
                row.finish_reason = 'stop' if row.end is not None else 'length'
                row.end = row.end or job.stopper.finish(row.new)
                self.decoder.remove(row)
        self.on_tokens(len(live))
        pieces = [(r.index, r.text.update(r.new, r.end)) for r in live]
        finished = not job.live()
        if finished:
            self.running.remove(job)
        job.on_event([p for p in pieces if p[1]], finished)

    def _finish(self, job, error=None):
        """End a job early (cancelled, or a fault): free its rows, tell its owner."""
        for row in job.live():
            if row in self.decoder.rows:
                self.decoder.remove(row)
            row.finish_reason = 'length'
            row.end = row.end or job.stopper.finish(row.new)
        if job in self.running:
            self.running.remove(job)
        job.error = error
        job.on_event([], True)
