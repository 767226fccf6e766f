"""The decoding engine: the API, both sampling scripts, train.py's samples and the server
all decode through it. One key/value cache of `max_rows` slots, one step loop whose rows
join and leave at any step (a fixed batch is the case where all join at once), one token
chooser, one sliding window.

    engine = Engine(numpy_model.Forward(arrays, hparams, 'float32'), max_rows=8)
    request = Request([[464, 3290]], options, Seeds(1).take(1), Stopper(enc, options))
    engine.add(request)
    while engine.busy():
        engine.step()           # request.on_step(request) after each of its tokens
    request.rows[0].new         # the sampled token ids

    samples = generate(engine, prompts, options, Seeds(1).take(len(prompts)),
                       Stopper(enc, options))                   # the offline API's loop

A row's tokens never depend on the rows beside it: each row is prefilled alone, in chunks
of PREFILL_CHUNK positions fixed by its own prompt, a step's forward pass is
row-invariant (numpy_model.py), and each row draws from its own generator (sample.Seeds).
Requests join first come, first served, all of a request's rows at once; a step prefills
at most PREFILL_CHUNK prompt positions (at least one chunk) before the running rows take
their token, so a long prompt joining holds the running rows up a chunk at a time, not
for its whole prefill. A joined row's first token comes from its prefill, then every row
takes one more token in the same step.

A request may ask for log-probabilities (of the model's own distribution, before the
options reshape it): `logprobs` N gives each chosen token's and the N likeliest
alternatives (row.logprobs), `prompt_logprobs` each prompt token's after the tokens
before it (row.prompt_logprobs, the first None); `generate=False` scores the prompt and
chooses nothing.

Past the context the window slides: a row whose cache holds n_ctx positions is prefilled
again with its newest n_ctx // 2 tokens (prompt and sample alike), and goes on.
"""

import collections

import numpy as np

from gpt2tune.generate import numpy_model, sample

# Prompt positions prefilled in one product, and at most per step (beyond one chunk).
PREFILL_CHUNK = 256


class Row:
    """One sample: a prompt, the tokens chosen after it, and where it ended."""

    def __init__(self, index, prompt, rng):
        self.index, self.prompt, self.rng = index, list(prompt), rng
        self.new = []
        self.end = None  # sample.Stopper.cut's (tokens kept, text) once it ended
        self.finish_reason = None  # 'stop' or 'length' once done
        self.slot = None
        self.prefilled = 0  # prompt tokens in the cache
        self.first_logits = None  # after the whole prompt, until its first token is chosen
        self.seen = None  # [n_vocab] bool: tokens in the row, for the repetition penalty
        self.counts = None  # [n_vocab]: times each token was generated, for OpenAI's two
        self.logprobs = []  # (logprob, {token: logprob} of the likeliest) per new token
        self.prompt_logprobs = None  # the same per prompt token, None for the first

    def sample(self, stopper):
        """The sample.Sample of this row, ended or not."""
        kept, text = self.end or stopper.finish(self.new)
        return sample.Sample(self.prompt, self.new[:kept], text)


class Request:
    """Rows sampled with one set of options: a row for each prompt (token lists of 1 to
    n_ctx tokens) with the generator rngs[i]. `on_step(request)` is called after each
    token chosen for it (rows that ended since the last call are done)."""

    def __init__(self, prompts, options, rngs, stopper, on_step=None, *, logprobs=None,
                 prompt_logprobs=False, generate=True):
        self.rows = [Row(i, p, rng) for i, (p, rng) in enumerate(zip(prompts, rngs,
                                                                      strict=True))]
        self.options, self.stopper = options, stopper
        self.logprobs, self.prompt_logprobs = logprobs, prompt_logprobs
        self.generate = generate
        self.on_step = on_step or (lambda request: None)
        self.cancelled = None  # why, once cancelled: its rows' finish_reason

    def live(self):
        return [r for r in self.rows if r.finish_reason is None]

    def cancel(self, reason='cancelled'):
        """Its rows leave at the engine's next step, each ended by `reason`."""
        self.cancelled = self.cancelled or reason


class Engine:
    """Requests decoded together on a numpy_model.Forward, up to `max_rows` rows at once."""

    def __init__(self, forward, max_rows):
        self.forward, self.max_rows = forward, max_rows
        self.n_ctx = forward.hparams.n_ctx
        self.cache = numpy_model.Cache(forward.hparams, max_rows, self.n_ctx)
        self.free = list(range(max_rows - 1, -1, -1))  # slots, the lowest taken first
        # Requests without rows, with rows and prompts still prefilling, and decoding.
        self.waiting, self.prefilling, self.running = collections.deque(), [], []

    def add(self, request):
        if len(request.rows) > self.max_rows:
            raise ValueError(f'{len(request.rows)} rows, more than the {self.max_rows} '
                             'the engine has')
        self.waiting.append(request)

    def busy(self):
        return bool(self.waiting or self.prefilling or self.running)

    def rows(self):
        """Rows decoding now."""
        return self.max_rows - len(self.free)

    def step(self):
        """Cancelled requests leave; waiting ones that fit take their rows; up to
        PREFILL_CHUNK prompt positions are prefilled, and requests whose prompts are all
        in join (their first tokens); then one more token for every row."""
        for request in [r for r in self.requests() if r.cancelled]:
            self.finish(request)
        while self.waiting and len(self.waiting[0].rows) <= len(self.free):
            request = self.waiting.popleft()
            for row in request.rows:
                row.slot = self.free.pop()
            self.prefilling.append(request)
        for request in self._prefill_some():
            self.running.append(request)
            if request.generate:
                self._choose(request, request.rows, [r.first_logits for r in request.rows])
            else:
                self.finish(request)
        stepping = [row for request in self.running for row in request.live()]
        if not stepping:
            return
        full = [row for row in stepping if self.cache.lengths[row.slot] == self.n_ctx]
        going = [row for row in stepping if row not in full]
        logits = {}
        for row in full:
            window = (row.prompt + row.new)[-(self.n_ctx // 2):]
            logits[row] = self.forward.prefill(self.cache, row.slot, window)
        if going:
            step = self.forward.step(self.cache, [r.slot for r in going],
                                     [r.new[-1] for r in going])
            logits.update(zip(going, step, strict=True))
        for request in list(self.running):
            rows = [row for row in request.live() if row in logits]
            if rows:
                self._choose(request, rows, [logits[row] for row in rows])

    def clear(self):
        """Finish every request (an offline loop that was interrupted)."""
        for request in self.requests():
            self.finish(request)

    def requests(self):
        """Every request the engine has: waiting, prefilling and running."""
        return [*self.waiting, *self.prefilling, *self.running]

    def _prefill_some(self):
        """Prefill chunks of the prefilling requests' prompts, first come first, while
        they fit PREFILL_CHUNK positions (one at least): the requests now all prefilled."""
        budget, done = PREFILL_CHUNK, []
        for request in list(self.prefilling):
            for row in request.rows:
                while row.prefilled < len(row.prompt):
                    size = min(PREFILL_CHUNK, len(row.prompt) - row.prefilled)
                    if size > budget:
                        return done
                    budget -= size
                    self._prefill_chunk(request, row)
            self.prefilling.remove(request)
            done.append(request)
        return done

    def _prefill_chunk(self, request, row):
        """The next chunk of a row's prompt into its cache: the logits after the whole
        prompt once it is in (row.first_logits), its logprobs as it goes if asked."""
        start = row.prefilled
        end = min(len(row.prompt), start + PREFILL_CHUNK)
        final = end == len(row.prompt)
        kind = 'every' if request.prompt_logprobs else 'last' if final else None
        logits = self.forward.prefill(self.cache, row.slot, row.prompt[start:end], start,
                                      logits=kind)
        if request.prompt_logprobs:
            row.prompt_logprobs = (row.prompt_logprobs or [None]) + [
                token_logprobs(before, token, request.logprobs or 0)  # the last predicts
                for before, token in zip(logits, row.prompt[start + 1:end + 1],  # none
                                         strict=False)]
            logits = logits[-1]
        row.prefilled = end
        if final:
            row.first_logits = logits

    def finish(self, request):
        """End a request now (cancelled, or a fault): its rows leave, each with what it
        has (a row not yet ended ends by the cancel's reason, else 'length'), and it is
        told."""
        if request in self.waiting:
            self.waiting.remove(request)
        if request in self.prefilling:
            self.prefilling.remove(request)
        for row in request.live():
            row.finish_reason = request.cancelled or 'length'
            row.end = row.end or request.stopper.finish(row.new)
            self._leave(row)
        if request in self.running:
            self.running.remove(request)
        request.on_step(request)

    def _leave(self, row):
        if row.slot is not None:
            self.free.append(row.slot)
            self.free.sort(reverse=True)
            row.slot = None

    def _choose(self, request, rows, logits):
        """The next token of each of `rows` (live rows of `request`) from their logits."""
        options, stopper = request.options, request.stopper
        seen = None
        if options.repetition_penalty != 1:
            for row in rows:
                if row.seen is None:
                    row.seen = np.zeros(len(logits[0]), bool)
                    row.seen[row.prompt] = True
            seen = np.stack([row.seen for row in rows])
        counts = None
        if options.presence_penalty or options.frequency_penalty:
            for row in rows:
                if row.counts is None:
                    row.counts = np.zeros(len(logits[0]), np.int32)
            counts = np.stack([row.counts for row in rows])
        tokens = sample.choose(np.stack(logits), options, [r.rng for r in rows], seen, counts)
        for row in rows:
            row.first_logits = None
        for row, token, row_logits in zip(rows, tokens.tolist(), logits, strict=True):
            row.new.append(token)
            if request.logprobs is not None:
                row.logprobs.append(token_logprobs(row_logits, token, request.logprobs))
            if row.seen is not None:
                row.seen[token] = True
            if row.counts is not None:
                row.counts[token] += 1
            row.end = stopper.cut(row.new)
            if row.end is not None or len(row.new) == options.length:
                row.finish_reason = 'stop' if row.end is not None else 'length'
                row.end = row.end or stopper.finish(row.new)
                self._leave(row)
        if not request.live():
            self.running.remove(request)
        request.on_step(request)


def token_logprobs(logits, token, top):
    """(log-probability of `token`, {token: log-probability} of the `top` likeliest) under
    logits [n_vocab], in float64."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max()
    logprobs = shifted - np.log(np.exp(shifted).sum())
    likeliest = np.argpartition(-logprobs, top - 1)[:top] if top else []
    return float(logprobs[token]), {int(t): float(logprobs[t]) for t in likeliest}


def generate(engine, prompts, options, rngs, stopper):
    """The offline loop on an idle engine: a sample.Sample after each prompt (token
    lists), row i drawing from rngs[i]; a row joins as soon as another ends. Interrupted,
    it leaves the engine idle."""
    requests = [Request([prompt], options, [rng], stopper)
                for prompt, rng in zip(prompts, rngs, strict=True)]
    for request in requests:
        engine.add(request)
    try:
        while engine.busy():
            engine.step()
    finally:
        engine.clear()
    return [request.rows[0].sample(stopper) for request in requests]
