"""The decoding engine on a fake model: where rows end, the sliding window, requests
joining when their rows fit and leaving when done or cancelled; then on the tiny model,
the logits after each slide against model.model's on the tokens the row holds."""

import numpy as np
import pytest
import tensorflow as tf

from gpt2tune.generate import engine, numpy_model, sample
from gpt2tune.model import model, model_dir
from gpt2tune.model.hparams import HParams

tf1 = tf.compat.v1


class FakeEncoder:
    """Token i decodes to the i-th letter; token 4 is <|endoftext|>."""
    eot_token = 4

    def decode(self, tokens):
        return ''.join('abcd|'[t] for t in tokens)


class FakeForward:
    """Prefers token script[slot][positions in the slot's cache], recording what it is
    fed: ('prefill', slot, tokens) and ('step', slots, tokens)."""

    def __init__(self, script, n_ctx=8):
        self.script, self.calls = script, []
        self.hparams = HParams(n_vocab=5, n_ctx=n_ctx, n_embd=2, n_head=1, n_layer=1)

    def _logits(self, cache, slot):
        logits = np.zeros(5)
        row = self.script[slot]
        logits[row[cache.lengths[slot] % len(row)]] = 10.0
        return logits

    def prefill(self, cache, slot, tokens, start=0, logits='last'):
        self.calls.append(('prefill', slot, list(tokens)) if not start else
                          ('prefill', slot, list(tokens), start))
        cache.lengths[slot] = start + len(tokens)
        return self._logits(cache, slot) if logits == 'last' else None

    def step(self, cache, slots, tokens):
        self.calls.append(('step', list(slots), list(tokens)))
        cache.lengths[slots] += 1
        return np.stack([self._logits(cache, slot) for slot in slots])


def greedy(**values):
    return sample.SamplingOptions(top_k=1, **values).checked(FakeForward([[0]]).hparams)


def run(forward, prompts, max_rows=None, **values):
    o = greedy(**values)
    return engine.generate(engine.Engine(forward, max_rows or len(prompts)), prompts, o,
                           sample.Seeds(0).take(len(prompts)), sample.Stopper(FakeEncoder(), o))


def test_rows_of_different_lengths_end_at_endoftext_and_the_loop_ends_when_all_did():
    forward = FakeForward([[0, 0, 1, 4, 2, 2], [0, 2, 2, 2, 4, 3]])
    out = run(forward, [[0, 0], [0]], length=6)
    assert [(s.tokens, s.text) for s in out] == [([1], 'b'), ([2, 2, 2], 'ccc')]
    assert forward.calls == [('prefill', 0, [0, 0]), ('prefill', 1, [0]),
                             ('step', [0, 1], [1, 2]), ('step', [1], [2]),
                             ('step', [1], [2])]


def test_without_stop_the_sample_runs_the_full_length():
    out = run(FakeForward([[4]]), [[0]], length=3, stop_at_endoftext=False)
    assert out[0].tokens == [4, 4, 4] and out[0].text == '|||'


def test_a_long_prompt_joins_a_chunk_a_step_while_the_running_rows_go_on(monkeypatch):
    monkeypatch.setattr(engine, 'PREFILL_CHUNK', 4)
    forward = FakeForward([[1], [2]], n_ctx=32)
    decoder = engine.Engine(forward, 2)
    o = greedy(length=6, stop_at_endoftext=False)
    running, joining = (engine.Request([p], o, sample.Seeds(0).take(1),
                                       sample.Stopper(FakeEncoder(), o)) for p in ([0], [3] * 10))
    decoder.add(running)
    decoder.step()
    decoder.add(joining)
    for _ in range(3):
        decoder.step()
    assert forward.calls == [
        ('prefill', 0, [0]), ('step', [0], [1]),
        ('prefill', 1, [3] * 4), ('step', [0], [1]),  # a chunk, and the running row's token
        ('prefill', 1, [3] * 4, 4), ('step', [0], [1]),
        ('prefill', 1, [3] * 2, 8), ('step', [0, 1], [1, 2])]  # joined: its first token, then
    assert joining.rows[0].new == [2, 2]                    # one more with the others


def test_a_rows_tokens_are_the_same_whenever_its_prompts_chunks_run(models_dir, monkeypatch):
    """A 30-token prompt in chunks of 8: alone, and joining with two others whose chunks
    share the steps' budget (so its chunks run at other steps)."""
    monkeypatch.setattr(engine, 'PREFILL_CHUNK', 8)
    loaded = model_dir.load('tiny', models_dir)
    hparams = loaded.hparams
    forward = numpy_model.Forward(model_dir.load_arrays(loaded.checkpoint, hparams), hparams,
                                  'float32')
    options = sample.SamplingOptions(length=6, stop_at_endoftext=False).checked(hparams)
    rs = np.random.RandomState(8)
    prompts = [rs.randint(0, hparams.n_vocab, size=n).tolist() for n in (30, 13, 21)]

    def tokens(rows, order):
        seeds = sample.Seeds(2).take(3)
        return [s.tokens for s in engine.generate(
            engine.Engine(forward, rows), [prompts[i] for i in order],
            options, [seeds[i] for i in order], sample.Stopper(loaded.encoder, options))]

    alone = tokens(1, [0])[0]
    assert tokens(3, [1, 2, 0])[2] == alone and tokens(3, [0, 1, 2])[0] == alone
    forward.close()


def test_the_frequency_penalty_counts_each_rows_generated_tokens():
    # Token 0's logit is 10 - 7 = 3, every other 0: after two 0s the penalty of 2 a time
    # takes it below the others. The prompt's 0s count for nothing.
    out = run(FakeForward([[0]]), [[0, 0, 0]], length=3, stop_at_endoftext=False,
              logit_bias={0: -7}, frequency_penalty=2.0)
    assert out[0].tokens[:2] == [0, 0] and out[0].tokens[2] != 0


def test_stop_text_cuts_the_text_exactly_and_the_ids_before_it():
    forward = FakeForward([[0, 1, 2, 3, 1, 2]])
    out = run(forward, [[0]], length=5, stop=('cd',))
    assert out[0].text == 'b' and out[0].tokens == [1]
    assert len(forward.calls) == 3  # stopped as soon as 'cd' was complete


def test_window_slides_to_the_newest_half_past_the_context():
    forward = FakeForward([[1, 2, 3]], n_ctx=4)
    out = run(forward, [[0, 1, 2]], length=4, stop_at_endoftext=False)
    assert out[0].tokens == [1, 2, 3, 1]
    # The cache is full at 4 positions: the newest 2 tokens (the sampled 1, 2) go again.
    assert forward.calls == [('prefill', 0, [0, 1, 2]), ('step', [0], [1]),
                             ('prefill', 0, [1, 2]), ('step', [0], [3])]


def test_the_repetition_penalty_counts_the_prompt_and_each_rows_own_tokens():
    """The model prefers token 0, then 1, then 2 (their logits 10, 9, 8): a prompt of [0]
    makes 0 unlikely; a row's penalty never sees another row's tokens."""
    class Preferring(FakeForward):
        def _logits(self, cache, slot):
            return np.array([10.0, 9.0, 8.0, 0.0, 0.0])
    assert run(Preferring([[0]]), [[0]], length=2, repetition_penalty=100.0)[0].tokens == \
        [1, 2]
    o = greedy(length=2, repetition_penalty=100.0)
    stopper = sample.Stopper(FakeEncoder(), o)
    together = engine.Request([[0], [3]], o, sample.Seeds(0).take(2), stopper)
    decoder = engine.Engine(Preferring([[0]] * 2), 2)
    decoder.add(together)
    while decoder.busy():
        decoder.step()
    assert [r.new for r in together.rows] == [[1, 2], [0, 1]]


def test_a_row_joins_in_the_slot_another_left_as_soon_as_it_left():
    forward = FakeForward([[4], [1], [2]])
    out = run(forward, [[0], [1], [2]], max_rows=2, length=3)
    assert [s.tokens for s in out] == [[], [1, 1, 1], []]
    joins = [call for call in forward.calls if call[0] == 'prefill']
    # Row 0 ends at its first token: row 2 takes its slot at the next step.
    assert joins == [('prefill', 0, [0]), ('prefill', 1, [1]), ('prefill', 0, [2])]


def test_a_request_waits_until_all_its_rows_fit_first_come_first_served():
    forward = FakeForward([[1], [1], [1]])
    decoder = engine.Engine(forward, 3)
    o = greedy(length=2)
    requests = [engine.Request([[0]] * n, o, sample.Seeds(0).take(n),
                               sample.Stopper(FakeEncoder(), o)) for n in (2, 2, 1)]
    for request in requests:
        decoder.add(request)
    decoder.step()
    # The third would fit beside the first, but waits its turn behind the second.
    assert [len(r.rows[0].new) for r in requests] == [2, 0, 0]
    decoder.step()
    assert [len(r.rows[0].new) for r in requests] == [2, 2, 2]
    with pytest.raises(ValueError, match='4 rows, more than the 3'):
        decoder.add(engine.Request([[0]] * 4, o, sample.Seeds(0).take(4),
                                   sample.Stopper(FakeEncoder(), o)))


def test_a_joining_requests_first_token_comes_before_the_running_rows_step():
    forward = FakeForward([[1], [1]])
    decoder = engine.Engine(forward, 2)
    o = greedy(length=20)
    events = []

    def request(name):
        r = engine.Request([[0]], o, sample.Seeds(0).take(1), sample.Stopper(FakeEncoder(), o),
                           on_step=lambda r: events.append((name, len(r.rows[0].new))))
        decoder.add(r)

    request('running')
    decoder.step()
    request('joining')
    decoder.step()
    assert events == [('running', 1), ('running', 2),
                      ('joining', 1), ('running', 3), ('joining', 2)]


def test_a_cancelled_request_leaves_at_the_next_step_with_what_it_has():
    forward = FakeForward([[1], [2]])
    decoder = engine.Engine(forward, 2)
    o = greedy(length=20)
    ended = []
    requests = [engine.Request([[0]], o, sample.Seeds(0).take(1),
                               sample.Stopper(FakeEncoder(), o),
                               on_step=lambda r: r.live() or ended.append(r))
                for _ in range(2)]
    for r in requests:
        decoder.add(r)
    decoder.step()
    requests[0].cancel()
    decoder.step()
    assert ended == [requests[0]] and requests[0].rows[0].finish_reason == 'cancelled'
    assert requests[0].rows[0].new == [1, 1] and decoder.rows() == 1
    assert forward.calls[-1] == ('step', [1], [2])  # only the other row stepped


@pytest.mark.parametrize('precision', ['float32', 'bfloat16', 'int8'])
def test_logits_after_the_window_slides_are_the_models_on_the_kept_tokens(
        models_dir, precision):
    """Prompts of 40 and 3 tokens, greedy past the context twice: every step's logits
    are model.model's (float32, TensorFlow) on the tokens the row's cache holds."""
    loaded = model_dir.load('tiny', models_dir)
    hparams = loaded.hparams
    forward = numpy_model.Forward(model_dir.load_arrays(loaded.checkpoint, hparams), hparams,
                                  precision)
    held, steps, prefills = {}, [], []  # slot -> tokens its cache holds; (tokens, logits)

    def prefill(cache, slot, tokens, start=0, logits='last'):
        held[slot] = held[slot][:start] + list(tokens) if start else list(tokens)
        prefills.append(len(tokens))
        out = numpy_model.Forward.prefill(forward, cache, slot, tokens, start, logits)
        if logits == 'last':
            steps.append((list(held[slot]), out))
        return out

    def step(cache, slots, tokens):
        logits = numpy_model.Forward.step(forward, cache, slots, tokens)
        for slot, token, row_logits in zip(slots, tokens, logits, strict=True):
            held[slot].append(int(token))
            steps.append((list(held[slot]), row_logits))
        return logits

    forward.prefill, forward.step = prefill, step
    rs = np.random.RandomState(4)
    prompts = [rs.randint(0, hparams.n_vocab, size=n).tolist() for n in (40, 3)]
    options = sample.SamplingOptions(length=hparams.n_ctx + 10, top_k=1,
                                     stop_at_endoftext=False).checked(hparams)
    engine.generate(engine.Engine(forward, 2), prompts, options, sample.Seeds(0).take(2),
                    sample.Stopper(loaded.encoder, options))
    forward.close()
    assert prefills == [40, 3, hparams.n_ctx // 2, hparams.n_ctx // 2, hparams.n_ctx // 2]
    assert len(steps) == 2 * options.length
    with tf1.Session(graph=tf.Graph()) as sess:
        X = tf1.placeholder(tf.int32, [1, None])
        last = model.model(hparams, X)['logits'][0, -1]
        model_dir.restore(sess, loaded.checkpoint)
        for tokens, logits in steps:
            np.testing.assert_allclose(logits, sess.run(last, {X: [tokens]}), rtol=0,
                                       atol=1e-4 if precision == 'float32' else 0.08)


def test_an_interrupted_loop_leaves_the_engine_idle_for_the_next():
    forward = FakeForward([[1], [1]])
    decoder = engine.Engine(forward, 2)
    o = greedy(length=5)

    def interrupted(*args):
        raise KeyboardInterrupt
    forward.step = interrupted
    with pytest.raises(KeyboardInterrupt):
        engine.generate(decoder, [[0], [0]], o, sample.Seeds(0).take(2),
                        sample.Stopper(FakeEncoder(), o))
    assert not decoder.busy() and decoder.rows() == 0
    del forward.step  # the class's again
    out = engine.generate(decoder, [[0]], o, sample.Seeds(0).take(1),
                          sample.Stopper(FakeEncoder(), o))
    assert out[0].tokens == [1] * 5


@pytest.mark.parametrize('precision', ['float32', 'bfloat16', 'int8'])
def test_asking_for_logprobs_changes_no_token_and_scoring_alone_chooses_none(models_dir,
                                                                             precision):
    loaded = model_dir.load('tiny', models_dir)
    hparams = loaded.hparams
    forward = numpy_model.Forward(model_dir.load_arrays(loaded.checkpoint, hparams), hparams,
                                  precision)
    options = sample.SamplingOptions(length=8, stop_at_endoftext=False).checked(hparams)
    prompt = np.random.RandomState(5).randint(0, hparams.n_vocab, size=20).tolist()

    def decode(**scoring):
        request = engine.Request([prompt], options, sample.Seeds(3).take(1),
                                 sample.Stopper(loaded.encoder, options), **scoring)
        decoder = engine.Engine(forward, 1)
        decoder.add(request)
        while decoder.busy():
            decoder.step()
        return request.rows[0]

    plain, scored = decode(logprobs=0), decode(logprobs=2, prompt_logprobs=True)
    assert scored.new == plain.new and len(scored.logprobs) == 8
    assert [f[0] for f in scored.logprobs] == [f[0] for f in plain.logprobs]  # bit for bit
    assert len(scored.prompt_logprobs) == 20 and scored.prompt_logprobs[0] is None
    alone = decode(prompt_logprobs=True, generate=False)
    assert alone.new == [] and alone.finish_reason == 'length'
    assert [f[0] for f in alone.prompt_logprobs[1:]] == [
        f[0] for f in scored.prompt_logprobs[1:]]
    forward.close()
