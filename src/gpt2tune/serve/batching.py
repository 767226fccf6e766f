"""The server's side of the decoding engine (engine.py): one thread runs the engine's
steps for every request in flight. A request joins the batch at the next step and leaves
it as soon as it is done or cancelled, so a short request is never held up by a long one.

    engine = Engine(engine.Engine(forward, max_rows=16), max_queue=64)
    engine.start()
    job = Job([[464, 3290]], n=2, options=checked_options, seed=1, encoder=encoder,
              on_event=lambda pieces, ended, finished: ...)  # on the engine's thread
    engine.submit(job)          # QueueFull when it would wait behind max_queue requests;
                                # EngineDead once the engine's thread has failed
    job.cancel()                # the client went away: its rows leave at the next step
    engine.stop()               # what runs still ends, finish_reason 'abort'

Each row draws from its own generator (sample.Seeds(seed)), as the API's rows do, so a
completion equals the API's `GPT2.load(path, seed=seed).generate(prompt, nsamples=n, ...)`
alone or under load.
"""

import concurrent.futures
import sys
import threading
import traceback

from gpt2tune.generate import engine as decoding_engine
from gpt2tune.generate import sample
from gpt2tune.generate.generation import TextStream


class QueueFull(Exception):
    """max_queue requests wait for rows already."""


class EngineDead(Exception):
    """The engine's thread ended on a fault: nothing more is decoded."""


class Job:
    """A completion request: `n` rows for each prompt (token lists), choice i being
    prompt i // n. `on_event(pieces, ended, finished)` is called on the engine's thread
    after each of its steps with [(choice index, new text, the row's tokens so far)],
    [(choice index, finish_reason)] of the rows that ended in it, and finished True at
    its last. A fault sets `error` before the last event."""

    def __init__(self, prompts, n, options, seed, encoder, on_event, **scoring):
        """`scoring`: engine.Request's logprobs, prompt_logprobs and generate."""
        rows = [p for p in prompts for _ in range(n)]
        self.request = decoding_engine.Request(
            rows, options, sample.Seeds(seed).take(len(rows)),
            sample.Stopper(encoder, options), on_step=self._stepped, **scoring)
        self.rows = self.request.rows
        self.texts = [TextStream(encoder, options.stop) for _ in rows]
        self.on_event, self.error = on_event, None
        self.told_ended = set()
        self.on_tokens, self.counted = (lambda n: None), 0  # Engine.submit sets on_tokens

    def cancel(self, reason='cancelled'):
        self.request.cancel(reason)

    def live(self):
        return self.request.live()

    def fail(self, error):
        """End every row now on a fault of the engine's: the last event, with `error`."""
        self.error = error
        for row in self.request.live():
            row.finish_reason = 'error'
            row.end = row.end or self.request.stopper.finish(row.new)
        self._stepped(self.request)

    @property
    def cancelled(self):
        return self.request.cancelled

    def _stepped(self, request):
        # counted before the listener hears of them: a client that has its answer and
        # then reads the metrics finds its tokens there
        total = sum(len(row.new) for row in self.rows)
        self.on_tokens(total - self.counted)
        self.counted = total
        pieces = [(row.index, text.update(row.new, row.end),
                   row.end[0] if row.end else len(row.new))
                  for row, text in zip(self.rows, self.texts, strict=True)]
        ended = [(row.index, row.finish_reason) for row in self.rows
                 if row.finish_reason is not None and row.index not in self.told_ended]
        self.told_ended.update(index for index, _ in ended)
        self.on_event([p for p in pieces if p[1]], ended, not request.live())


class Engine:
    """Runs Jobs on an engine.Engine from one thread; see the module's docstring."""

    def __init__(self, core, *, max_queue, on_tokens=None):
        self.core, self.max_queue = core, max_queue
        self.on_tokens = on_tokens or (lambda n: None)
        self.cond = threading.Condition()
        self.stopping, self.queue = False, []
        self.dead = None  # the fault that ended the thread
        self.thread = threading.Thread(target=self._run, name='batching', daemon=True)
        self.warm_up, self.warmed_up = None, concurrent.futures.Future()

    def start(self, warm_up=lambda: None):
        """Start the engine's thread, which runs warm_up() before any request: a
        concurrent.futures.Future, done once it has, with its exception if it raised (the
        thread then ends). On the engine's thread, as every product after it: a thread
        that ran the parallel products and lives on keeps OpenMP's threads for it, and the
        engine's thread then multiplies more slowly."""
        self.warm_up = warm_up
        self.thread.start()
        return self.warmed_up

    def submit(self, job):
        """Queue a job; QueueFull when it would wait for rows behind max_queue requests
        that wait already (a job that fits the rows free now waits for none). A job of
        more rows than the engine has must not be submitted."""
        with self.cond:
            if self.dead is not None:
                raise EngineDead from self.dead
            self.cond.notify()
            if self._waiting([*self._pending(), job.request]) > self.max_queue:
                raise QueueFull
            job.on_tokens = self.on_tokens
            self.queue.append(job)

    def full(self):
        """Whether every request from now on would find max_queue ahead of it waiting
        (requests join first come, first served), whatever its rows."""
        waiting = self.queued()
        return waiting > 0 and waiting >= self.max_queue

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
        """Cut what is left (its rows end 'abort') and end the thread."""
        with self.cond:
            self.stopping = True
            for job in self.queue:
                job.cancel('abort')
            for request in self.core.requests():
                request.cancel('abort')
            self.cond.notify()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self):
        jobs = {}  # request -> its Job, while the engine has it
        try:
            if self._warm_up():
                self._loop(jobs)
        except BaseException as e:  # the thread ends: no request may wait for it
            traceback.print_exc(file=sys.stderr)
            self._end(e, jobs)

    def _warm_up(self):
        """Run warm_up(), its outcome in `warmed_up` (whoever waits for it reports a
        fault); False where it failed, or where the wait was given up first (a stopped
        start): the thread then ends."""
        if not self.warmed_up.set_running_or_notify_cancel():
            self._end(concurrent.futures.CancelledError('the start was given up'), {})
            return False
        try:
            self.warm_up()
        except BaseException as e:
            self._end(e, {})
            self.warmed_up.set_exception(e)
            return False
        self.warmed_up.set_result(None)
        return True

    def _end(self, fault, jobs):
        """The thread ends on `fault`: every job it has (`jobs`) or that waits fails."""
        with self.cond:
            self.dead = fault
            left = [*jobs.values(), *self.queue]
            self.queue.clear()
        for job in left:
            try:
                job.fail(fault)
            except Exception:  # one listener's fault must not keep the others waiting
                traceback.print_exc(file=sys.stderr)

    def _loop(self, jobs):
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
            try:
                self.core.step()
            except Exception as e:  # a fault of ours: fail the requests, go on serving
                traceback.print_exc(file=sys.stderr)
                for request in self.core.requests():
                    jobs[request].error = e
                    request.cancel('error')
                    self.core.finish(request)
            for request in [r for r in jobs if not r.live()]:
                del jobs[request]

