"""The server's side of the decoding engine (engine.py): one thread runs the engine's
steps for every request in flight. A request joins the batch at the next step and leaves
it as soon as it is done or cancelled, so a short request is never held up by a long one.

    engine = Engine(engine.Engine(forward, max_rows=16), max_queue=64)
    engine.start()
    job = Job([[464, 3290]], n=2, options=checked_options, seed=1, encoder=encoder,
              on_event=lambda pieces, finished: ...)   # called on the engine's thread
    engine.submit(job)          # QueueFull when it would wait behind max_queue requests
    job.cancel()                # the client went away: its rows leave at the next step
    engine.stop()

Each row draws from its own generator (sample.Seeds(seed)), as the API's rows do, so a
completion equals the API's `GPT2.load(path, seed=seed).generate(prompt, nsamples=n, ...)`
alone or under load.
"""

import sys
import threading
import traceback

from gpt2tune.generate import engine as decoding_engine
from gpt2tune.generate import sample
from gpt2tune.generate.generation import TextStream


class QueueFull(Exception):
    """max_queue requests wait for rows already."""


class Job:
    """A completion request: `n` rows for each prompt (token lists), choice i being
    prompt i // n. `on_event(pieces, finished)` is called on the engine's thread after
    each of its steps with [(choice index, new text)], finished True at its last."""

    def __init__(self, prompts, n, options, seed, encoder, on_event, **scoring):
        """`scoring`: engine.Request's logprobs, prompt_logprobs and generate."""
        rows = [p for p in prompts for _ in range(n)]
        self.request = decoding_engine.Request(
            rows, options, sample.Seeds(seed).take(len(rows)),
            sample.Stopper(encoder, options), on_step=self._stepped, **scoring)
        self.rows = self.request.rows
        self.texts = [TextStream(encoder, options.stop) for _ in rows]
        self.on_event, self.error = on_event, None

    def cancel(self):
        self.request.cancel()

    def live(self):
        return self.request.live()

    @property
    def cancelled(self):
        return self.request.cancelled

    def _stepped(self, request):
        pieces = [(row.index, text.update(row.new, row.end))
                  for row, text in zip(self.rows, self.texts, strict=True)]
        self.on_event([p for p in pieces if p[1]], not request.live())


class Engine:
    """Runs Jobs on an engine.Engine from one thread; see the module's docstring."""

    def __init__(self, core, *, max_queue, on_tokens=None):
        self.core, self.max_queue = core, max_queue
        self.on_tokens = on_tokens or (lambda n: None)
        self.cond = threading.Condition()
        self.stopping, self.queue = False, []
        self.thread = threading.Thread(target=self._run, name='batching', daemon=True)

    def start(self):
        self.thread.start()

    def submit(self, job):
        """Queue a job; QueueFull when it would wait for rows behind max_queue requests
        that wait already (a job that fits the rows free now waits for none). A job of
        more rows than the engine has must not be submitted."""
        with self.cond:
            self.cond.notify()
            if self._waiting([*self._pending(), job.request]) > self.max_queue:
                raise QueueFull
            self.queue.append(job)

    def rows(self):
        return self.core.rows()

    def queued(self):
        """Requests waiting for rows."""
        return self._waiting(self._pending())

    def _pending(self):
        """Requests not running yet, in the order they join."""
        return [*self.core.waiting, *(job.request for job in self.queue)]

    def _waiting(self, requests):
        """How many of `requests`, joining in order, find no rows free for them."""
        free = len(self.core.free)
        for i, request in enumerate(requests):
            if len(request.rows) > free:
                return len(requests) - i
            free -= len(request.rows)
        return 0

    def busy(self):
        return bool(self.queue) or self.core.busy()

    def stop(self):
        """Cancel what is left and end the thread."""
        with self.cond:
            self.stopping = True
            for job in self.queue:
                job.cancel()
            for request in list(self.core.waiting) + self.core.running:
                request.cancel()
            self.cond.notify()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self):
        jobs = {}  # request -> its Job, while the engine has it
        while True:
            with self.cond:
                while not self.stopping and not self.busy():
                    self.cond.wait()
                if self.stopping and not self.busy():
                    return
                for job in self.queue:
                    jobs[job.request] = job
                    self.core.add(job.request)
                self.queue.clear()
            before = {request: self._tokens(request) for request in self.core.running}
            try:
                self.core.step()
            except Exception as e:  # a fault of ours: fail the requests, go on serving
                traceback.print_exc(file=sys.stderr)
                for request in list(self.core.waiting) + self.core.running:
                    jobs[request].error = e
                    self.core.finish(request)
            self.on_tokens(sum(self._tokens(r) - before.get(r, 0) for r in jobs))
            for request in [r for r in jobs if not r.live()]:
                del jobs[request]

    @staticmethod
    def _tokens(request):
        return sum(len(row.new) for row in request.rows)
