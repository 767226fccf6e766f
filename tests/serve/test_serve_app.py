"""The server (serve/serve_app.py, run by commands/serve.py) on the tiny model: a real
server on a free port in a subprocess, the real `openai` client. Where a test needs
requests to share a step or one to last, it runs the server with run_with_fakes.py's
serve_hold and serve_pause and waits for events (a line, a metric, a chunk). The
command's own part (its flags, --host's warning, --max_connections, the drain):
tests/commands/test_serve.py."""

import json
import os
import signal
import socket
import threading
import urllib.error
import urllib.request

import numpy as np
import openai
import pytest

from fixtures import KEY, PROMPTS, Server
from gpt2tune.data import encoder
from gpt2tune.generate import generation

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def api(models_dir):
    """The Python API's texts for (prompt, n, seed, options), one row at a time."""
    def generate(prompt, n=1, seed=None, precision='auto', **options):
        g = generation.GPT2.load(os.path.join(models_dir, 'tiny'), seed=seed, batch_size=1,
                                 precision=precision)
        try:
            return g.generate(prompt, nsamples=n, **options)
        finally:
            g.close()
    return generate


def test_completion_and_stream_equal_the_api_for_the_same_seed(server, api):
    client = server.client()
    answer = client.completions.create(model='tiny', prompt=PROMPTS[0], n=2, seed=5,
                                       max_tokens=10, top_p=0.9)
    assert [c.text for c in answer.choices] == api(PROMPTS[0], 2, 5, length=10, top_p=0.9)
    assert answer.usage.completion_tokens <= 20 and answer.usage.prompt_tokens > 0
    pieces, reasons = [], []
    for chunk in client.completions.create(model='tiny', prompt=PROMPTS[1], seed=7,
                                           max_tokens=12, stream=True,
                                           extra_body={'top_k': 20}):
        pieces += [c.text for c in chunk.choices]
        reasons += [c.finish_reason for c in chunk.choices if c.finish_reason]
    assert ''.join(pieces) == api(PROMPTS[1], 1, 7, length=12, top_k=20)[0]
    assert len(reasons) == 1 and reasons[0] in ('stop', 'length')


@pytest.mark.parametrize('precision', ['float32', 'bfloat16', 'int8'])
def test_eight_concurrent_requests_each_equal_their_text_alone(models_dir, api, precision):
    """Sent together, held until all 8 are in, so they share the batch's steps."""
    s = Server(models_dir, '--max_batch', '8', '--precision', precision,
               fakes=['serve_hold=8'])
    try:
        settings = [dict(max_tokens=4 + 3 * i, temperature=0 if i % 2 else 1.0, seed=i)
                    for i in range(8)]
        answers = [None] * 8

        def send(i):
            answers[i] = s.client().completions.create(
                model='tiny', prompt=PROMPTS[i], **settings[i]).choices[0].text
        threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        s.stop()
    assert answers == [api(p, 1, o['seed'], precision, length=o['max_tokens'],
                           top_k=1 if i % 2 else 0)[0]
                       for i, (p, o) in enumerate(zip(PROMPTS, settings, strict=True))]


def test_short_request_started_with_a_long_one_finishes_first(models_dir, tmp_path):
    release = tmp_path / 'release'
    # Both join the first step; the engine pauses after step 5, the short one's 3 tokens
    # done and the long one's 64 not.
    s = Server(models_dir, '--max_batch', '2',
               fakes=['serve_hold=2', f'serve_pause=5:{release}'])
    finished = []
    try:
        def send(name, max_tokens):
            s.client().completions.create(model='tiny', prompt=PROMPTS[0],
                                          max_tokens=max_tokens,
                                          extra_body={'stop_at_endoftext': False})
            finished.append(name)
        long = threading.Thread(target=send, args=('long', 64))
        long.start()
        s.wait_for_line('fake: request 1 submitted')  # the long one first
        send('short', 3)
        release.touch()
        long.join()
    finally:
        s.stop()
    assert finished == ['short', 'long']


def full_queue(models_dir):
    """A server of one row and --max_queue 1 with one request on the row and one waiting,
    held so by the fake until a third request comes: (server, their threads, the list
    their statuses go into)."""
    s = Server(models_dir, '--max_batch', '1', '--max_queue', '1', fakes=['serve_hold=3'])
    statuses = []
    accepted = [threading.Thread(target=lambda: statuses.append(s.request(
        '/v1/completions', {'prompt': 'x', 'max_tokens': 2})[0])) for _ in range(2)]
    for thread in accepted:
        thread.start()
    s.wait_for_line('fake: request 1 submitted')
    s.wait_for_line('fake: request 2 submitted')
    return s, accepted, statuses


def test_full_queue_gets_429_with_retry_after(models_dir):
    """One request runs on the one row, one waits for it, the third finds the queue full."""
    s, accepted, statuses = full_queue(models_dir)
    try:
        assert s.metric('gpt2_queue_length') == 1
        with pytest.raises(openai.RateLimitError) as refused:
            s.client().completions.create(model='tiny', prompt='y', max_tokens=2)
        assert refused.value.response.headers['retry-after'] == '1'
        for thread in accepted:  # the refusal counted as the third request: the engine goes on
            thread.join()
        assert statuses == [200, 200]
    finally:
        s.stop()


@pytest.mark.parametrize('max_batch, max_queue, sent, answered', [(1, 0, 1, 1), (4, 1, 12, 5)])
def test_the_queue_counts_only_requests_waiting_for_rows(models_dir, max_batch, max_queue,
                                                         sent, answered):
    """Sent together to an idle server: those that fit the free rows, then max_queue more."""
    s = Server(models_dir, '--max_batch', str(max_batch), '--max_queue', str(max_queue),
               fakes=[f'serve_hold={sent}'])
    statuses = []
    try:
        threads = [threading.Thread(target=lambda: statuses.append(s.request(
            '/v1/completions', {'prompt': 'x', 'max_tokens': 2})[0])) for _ in range(sent)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        s.stop()
    assert sorted(statuses) == [200] * answered + [429] * (sent - answered)


def test_the_key_in_any_case_of_bearer_and_a_null_model_are_accepted(server):
    body = json.dumps({'model': None, 'prompt': 'x', 'max_tokens': 1}).encode()
    for scheme in ('bearer', 'BEARER', 'Bearer'):
        request = urllib.request.Request(server.url + '/v1/completions', body, {
            'Authorization': f'{scheme} {KEY}', 'Content-Type': 'application/json'})
        with urllib.request.urlopen(request, timeout=60) as answer:
            assert answer.status == 200
    request = urllib.request.Request(server.url + '/v1/models', headers={
        'Authorization': f'Basic {KEY}'})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 401
    assert refused.value.headers['WWW-Authenticate'] == 'Bearer'


def test_penalties_and_logit_bias_reach_the_engine_as_the_apis_keywords(server, api):
    banned = server.request('/tokenize', {'prompt': ' the'})[1]['tokens'][0]
    options = dict(max_tokens=12, seed=4, presence_penalty=0.6, frequency_penalty=1.2,
                   logit_bias={str(banned): -100, '11': 2.5})
    answer = server.client().completions.create(model='tiny', prompt=PROMPTS[2], **options)
    assert answer.choices[0].text == api(
        PROMPTS[2], 1, 4, length=12, presence_penalty=0.6, frequency_penalty=1.2,
        logit_bias={banned: -100, 11: 2.5})[0]
    plain = server.client().completions.create(model='tiny', prompt=PROMPTS[2], max_tokens=12,
                                               seed=4)
    assert plain.choices[0].text != answer.choices[0].text


def test_without_the_key_401_and_models_lists_the_model(server):
    with pytest.raises(openai.AuthenticationError):
        server.client('wrong').completions.create(model='tiny', prompt='x', max_tokens=2)
    assert server.request('/v1/models', key='')[0] == 401
    assert [m.id for m in server.client().models.list()] == ['tiny']
    assert server.request('/health') == (200, {'status': 'ok'})


def test_health_and_metrics_answer_without_the_key_unless_metrics_are_protected(server,
                                                                              models_dir):
    assert server.request('/health', key='') == (200, {'status': 'ok'})
    assert server.request('/metrics', key='')[0] == 200
    protected = Server(models_dir, '--api_key', KEY, '--protect_metrics')
    try:
        assert protected.request('/metrics', key='')[0] == 401
        assert protected.request('/metrics')[0] == 200
        assert protected.request('/health', key='')[0] == 200
    finally:
        protected.stop()


def test_a_page_of_an_allowed_origin_may_call_and_its_preflight_needs_no_key(models_dir):
    s = Server(models_dir, '--api_key', KEY, '--allow_origin', 'https://jokes.example')
    try:
        preflight = {'Origin': 'https://jokes.example', 'Access-Control-Request-Method': 'POST',
                     'Access-Control-Request-Headers': 'authorization,content-type'}
        status, _, headers = s.request('/v1/completions', key='', method='OPTIONS',
                                       headers=preflight)
        assert status == 200
        assert headers['Access-Control-Allow-Origin'] == 'https://jokes.example'
        status, _, headers = s.request('/v1/completions', key='', method='OPTIONS', headers={
            **preflight, 'Origin': 'https://other.example'})
        assert status == 400 and 'Access-Control-Allow-Origin' not in headers
        status, answer, headers = s.request('/v1/completions', {'prompt': 'x', 'max_tokens': 1},
                                            headers={'Origin': 'https://jokes.example'})
        assert status == 200 and headers['Access-Control-Allow-Origin'] == 'https://jokes.example'
        assert s.request('/v1/completions', {'prompt': 'x'}, key='',
                         headers={'Origin': 'https://jokes.example'})[0] == 401
    finally:
        s.stop()


def test_tokenize_and_detokenize_use_the_models_encoder(server, vocab_dir):
    text = 'Why did the chicken cross the road?|'
    ids = encoder.load_encoder(vocab_dir).encode(text)
    status, answer = server.request('/tokenize', {'model': 'tiny', 'prompt': text})
    assert (status, answer) == (200, {'tokens': ids, 'count': len(ids), 'max_model_len': 64})
    assert server.request('/detokenize', {'tokens': ids}) == (200, {'prompt': text})
    completion = server.client().completions.create(model='tiny', prompt=text, max_tokens=1)
    assert completion.usage.prompt_tokens == len(ids)
    assert server.request('/detokenize', {'tokens': [-1]})[1]['error']['param'] == 'tokens'
    assert server.request('/tokenize', {'prompt': 5})[1]['error']['param'] == 'prompt'
    assert server.request('/tokenize', {'model': 'gpt-4', 'prompt': 'x'})[0] == 404
    assert server.request('/tokenize', {'prompt': 'x'}, key='')[0] == 401


BAD = [  # (body, status, param or None where only the message names it)
    (b'{"prompt": "x",', 400, None), ([1, 2], 400, None), ({'prompt': 5}, 400, 'prompt'),
    ({'prompt': []}, 400, 'prompt'), ({'prompt': [[1, -1]]}, 400, 'prompt'),
    ({'prompt': [10 ** 9]}, 400, 'prompt'), ({'prompt': 'word ' * 200}, 400, 'prompt'),
    ({'prompt': list(range(65))}, 400, 'prompt'),
    ({'prompt': 'x', 'n': 0}, 400, 'n'), ({'prompt': 'x', 'n': '2'}, 400, 'n'),
    ({'prompt': 'x', 'n': 9}, 400, 'n'), ({'prompt': 'x', 'max_tokens': 0}, 400, None),
    ({'prompt': 'x', 'max_tokens': 10 ** 6}, 400, 'max_tokens'),
    ({'prompt': 'x', 'max_tokens': 2.5}, 400, 'max_tokens'),
    ({'prompt': 'x', 'temperature': -1}, 400, 'temperature'),
    ({'prompt': 'x', 'top_p': 1.5}, 400, None), ({'prompt': 'x', 'top_p': 'a'}, 400, 'top_p'),
    ({'prompt': 'x', 'stop': [1]}, 400, 'stop'), ({'prompt': 'x', 'seed': -1}, 400, 'seed'),
    ({'prompt': 'x', 'stream': 'yes'}, 400, 'stream'), ({'prompt': 'x', 'foo': 1}, 400, 'foo'),
    ({'prompt': 'x', 'logprobs': 6}, 400, 'logprobs'),
    ({'prompt': 'x', 'model': 'gpt-4'}, 404, 'model'),
    ({'prompt': 'x', 'logit_bias': {'x': 1}}, 400, 'logit_bias'),
    ({'prompt': 'x', 'logit_bias': [1]}, 400, 'logit_bias'),
    ({'prompt': 'x', 'presence_penalty': 3}, 400, 'presence_penalty'),
    ({'prompt': 'x', 'frequency_penalty': 'a'}, 400, 'frequency_penalty'),
    (b'{"prompt": "x", "temperature": NaN}', 400, None),
    (b'{"prompt": "x", "max_tokens": Infinity}', 400, None),
]


@pytest.mark.parametrize('body,status,param', BAD)
def test_bad_input_gets_its_4xx_and_the_server_goes_on(server, body, status, param):
    got, answer = server.request('/v1/completions', body)
    assert got == status
    assert set(answer['error']) == {'message', 'type', 'param', 'code'}
    assert param is None or answer['error']['param'] == param
    assert server.request('/v1/completions', {'prompt': 'x', 'max_tokens': 1})[0] == 200


def test_body_over_the_limit_is_refused_unread_and_unknown_route_is_404(server):
    with socket.create_connection(('127.0.0.1', server.port)) as sock:
        sock.sendall(b'POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer '
                     + KEY.encode() + b'\r\nContent-Length: 1000000000\r\n\r\n')
        assert sock.recv(4096).startswith(b'HTTP/1.1 413')
    assert server.request('/v1/nothing')[0] == 404
    assert server.request('/v1/completions')[0] == 405


def test_disconnected_stream_frees_its_row(slow_server):
    stream = slow_server.client().completions.create(
        model='tiny', prompt=PROMPTS[0], max_tokens=64, stream=True,
        extra_body={'stop_at_endoftext': False})
    slow_server.wait_for_line('fake: engine paused')
    assert slow_server.metric('gpt2_batch_rows') == 1
    stream.close()
    slow_server.wait_for_metric('gpt2_cancelled_requests_total', 1)  # while paused
    slow_server.release.touch()
    slow_server.wait_for_metric('gpt2_batch_rows', 0)
    assert slow_server.metric('gpt2_generated_tokens_total') < 64  # stopped, not finished
    assert slow_server.request('/v1/completions', {'prompt': 'x', 'max_tokens': 1})[0] == 200


def test_a_stream_cut_by_the_drain_says_abort_and_ends_with_an_error_event(models_dir,
                                                                         tmp_path):
    release = tmp_path / 'release'
    s = Server(models_dir, '--drain_seconds', '0', fakes=[f'serve_pause=2:{release}'])
    try:
        stream = s.client().completions.create(
            model='tiny', prompt=PROMPTS[0], max_tokens=40, stream=True,
            extra_body={'stop_at_endoftext': False})
        chunks = iter(stream)
        s.wait_for_line('fake: engine paused')
        s.proc.send_signal(signal.SIGTERM)
        s.wait_for_line('Draining')
        release.touch()
        reasons = []
        with pytest.raises(openai.APIError, match='shutting down'):
            for chunk in chunks:
                reasons += [c.finish_reason for c in chunk.choices if c.finish_reason]
        assert reasons == ['abort']
        assert s.proc.wait(timeout=60) == 0
    finally:
        s.stop()


def test_a_dead_engine_fails_every_request_at_once_and_health_says_so(models_dir):
    s = Server(models_dir, '--max_batch', '1', fakes=['serve_hold=2', 'engine_dies=3'])
    try:
        stream = s.client().completions.create(
            model='tiny', prompt=PROMPTS[0], max_tokens=40, stream=True,
            extra_body={'stop_at_endoftext': False})
        s.wait_for_line('fake: request 1 submitted')
        waiting = []
        thread = threading.Thread(target=lambda: waiting.append(s.request(
            '/v1/completions', {'prompt': 'x', 'max_tokens': 2})))
        thread.start()
        s.wait_for_line('fake: engine thread dies')
        with pytest.raises(openai.APIError, match='engine failed'):
            for _ in stream:
                pass
        thread.join()
        assert waiting[0][0] == 503 and waiting[0][1]['error']['code'] == 'engine_failed'
        assert s.request('/health') == (503, {'status': 'engine failed'})
        assert s.request('/v1/completions', {'prompt': 'x', 'max_tokens': 1})[0] == 503
    finally:
        s.stop()


def test_a_stream_left_before_its_first_event_is_cancelled(models_dir):
    s = Server(models_dir, fakes=['serve_hold=2'])
    try:
        body = json.dumps({'prompt': 'x', 'max_tokens': 30, 'stream': True}).encode()
        with socket.create_connection(('127.0.0.1', s.port), timeout=60) as sock:
            sock.sendall(b'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: '
                         b'application/json\r\nContent-Length: ' + str(len(body)).encode()
                         + b'\r\n\r\n' + body)
            s.wait_for_line('fake: request 1 submitted')
        s.wait_for_metric('gpt2_cancelled_requests_total', 1)  # before any step
        assert s.request('/v1/completions', {'prompt': 'y', 'max_tokens': 2})[0] == 200
        assert s.metric('gpt2_generated_tokens_total') == 2  # the left one ran no step
    finally:
        s.stop()


def test_a_full_queue_refuses_before_the_body_arrives(models_dir):
    s, accepted, statuses = full_queue(models_dir)
    try:
        with socket.create_connection(('127.0.0.1', s.port), timeout=60) as sock:
            sock.sendall(b'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: '
                         b'application/json\r\nContent-Length: 1000\r\n\r\n{"prompt"')
            assert sock.recv(4096).startswith(b'HTTP/1.1 429')  # the body never came
        for thread in accepted:
            thread.join()
        assert statuses == [200, 200]
    finally:
        s.stop()


def test_n_streams_one_choice_a_chunk_and_each_choice_ends_when_it_ends(server, api):
    seed, reasons_at, texts = 0, {}, {}
    while True:  # a seed whose two choices end at different steps (stop at 'e')
        seed += 1
        tokens = api(PROMPTS[3], 2, seed, length=20, stop=['e'], return_tokens=True)
        if len(tokens[0]) != len(tokens[1]):
            break
    chunks = list(server.client().completions.create(
        model='tiny', prompt=PROMPTS[3], n=2, seed=seed, max_tokens=20, stop=['e'],
        stream=True))
    for at, chunk in enumerate(chunks):
        assert len(chunk.choices) == 1
        choice = chunk.choices[0]
        texts[choice.index] = texts.get(choice.index, '') + choice.text
        if choice.finish_reason:
            assert choice.index not in reasons_at
            reasons_at[choice.index] = at
    assert [texts[0], texts[1]] == api(PROMPTS[3], 2, seed, length=20, stop=['e'])
    first, last = sorted(reasons_at, key=reasons_at.get)
    later_text = [at for at, c in enumerate(chunks)
                  if c.choices[0].index == last and c.choices[0].text]
    assert later_text and reasons_at[first] < later_text[-1]


def graph_token_logprobs(models_dir, tokens):
    """Each token's log-probability after those before it [len(tokens) - 1], from the
    TensorFlow graph model (as score.py computes its losses): the reference."""
    from fixtures import graph_logits
    from gpt2tune.model import model_dir
    loaded = model_dir.load('tiny', models_dir, None)
    logits = graph_logits(loaded.hparams, loaded.checkpoint, [tokens])[0].astype(np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    logprobs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return logprobs[np.arange(len(tokens) - 1), tokens[1:]]


def test_echo_with_max_tokens_0_scores_the_prompt_as_the_graph_model_does(server, models_dir):
    text = PROMPTS[0] + ' To get to the other side.'
    ids = server.request('/tokenize', {'prompt': text})[1]['tokens']
    answer = server.client().completions.create(model='tiny', prompt=text, echo=True,
                                                logprobs=2, max_tokens=0)
    choice = answer.choices[0]
    assert choice.text == text and answer.usage.completion_tokens == 0
    figures = choice.logprobs
    assert ''.join(figures.tokens) == text and len(figures.tokens) == len(ids)
    assert figures.token_logprobs[0] is None and figures.top_logprobs[0] is None
    np.testing.assert_allclose(figures.token_logprobs[1:], graph_token_logprobs(models_dir, ids),
                               rtol=0, atol=1e-4)
    assert all(len(top) == 2 and max(top.values()) >= lp - 1e-12
               for top, lp in zip(figures.top_logprobs[1:], figures.token_logprobs[1:],
                                  strict=True))


def test_generated_tokens_logprobs_follow_the_echoed_prompts(server, models_dir, api):
    # lm-evaluation-harness's local-completions model asks this way.
    answer = server.client().completions.create(
        model='tiny', prompt=PROMPTS[1], echo=True, logprobs=3, max_tokens=6, temperature=0,
        extra_body={'stop_at_endoftext': False})
    choice = answer.choices[0]
    figures = choice.logprobs
    prompt_length = len(figures.tokens) - 6
    # The prompt's tokens are whole characters; a random model's may not be (bytes:...).
    assert ''.join(figures.tokens[:prompt_length]) == PROMPTS[1]
    assert figures.text_offset[:prompt_length] == [
        sum(len(t) for t in figures.tokens[:i]) for i in range(prompt_length)]
    assert figures.text_offset == sorted(figures.text_offset)
    assert figures.text_offset[-1] < len(choice.text)
    prompt = server.request('/tokenize', {'prompt': PROMPTS[1]})[1]['tokens']
    new = api(PROMPTS[1], length=6, top_k=1, stop_at_endoftext=False, return_tokens=True)[0]
    np.testing.assert_allclose(figures.token_logprobs[1:],
                               graph_token_logprobs(models_dir, prompt + new), rtol=0, atol=1e-4)
    for top, lp in zip(figures.top_logprobs[prompt_length:],
                       figures.token_logprobs[prompt_length:], strict=True):
        assert len(top) == 3 and lp == max(top.values())  # greedy: the likeliest
    plain = server.client().completions.create(model='tiny', prompt=PROMPTS[1], logprobs=0,
                                               max_tokens=6, temperature=0,
                                               extra_body={'stop_at_endoftext': False})
    assert plain.choices[0].logprobs.token_logprobs == figures.token_logprobs[prompt_length:]
    assert plain.choices[0].logprobs.top_logprobs == [{}] * 6
    assert plain.choices[0].logprobs.text_offset[0] == 0


def test_a_harness_scoring_by_echo_gets_transformers_numbers_on_the_export(server,
                                                                          models_dir,
                                                                          tmp_path):
    """As lm-evaluation-harness's loglikelihood: context + continuation echoed with
    logprobs 1, max_tokens 0; the continuation's summed log-probability and whether each
    of its tokens is the likeliest, against transformers on the Hugging Face export."""
    torch = pytest.importorskip('torch')
    transformers = pytest.importorskip('transformers')
    from gpt2tune.commands import huggingface as huggingface_command
    huggingface_command.export(os.path.join(models_dir, 'tiny'), str(tmp_path / 'hf'))
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path / 'hf')).eval()
    context, continuation = 'Why did the chicken cross the road?|', ' To get to the other side.'
    ids = server.request('/tokenize', {'prompt': context + continuation})[1]['tokens']
    n_context = len(server.request('/tokenize', {'prompt': context})[1]['tokens'])
    answer = server.client().completions.create(model='tiny', prompt=ids, echo=True,
                                                logprobs=1, max_tokens=0)
    figures = answer.choices[0].logprobs
    with torch.no_grad():
        theirs = torch.log_softmax(hf(torch.tensor([ids])).logits[0].double(), -1).numpy()
    expected = theirs[np.arange(len(ids) - 1), ids[1:]]
    np.testing.assert_allclose(figures.token_logprobs[1:], expected, rtol=0, atol=1e-4)
    ours_sum = sum(figures.token_logprobs[n_context:])
    assert abs(ours_sum - expected[n_context - 1:].sum()) < 1e-3
    greedy = [max(top.values()) == lp for top, lp in zip(
        figures.top_logprobs[n_context:], figures.token_logprobs[n_context:], strict=True)]
    assert greedy == list(theirs.argmax(-1)[n_context - 1:-1] == np.array(ids[n_context:]))


def test_a_streams_logprobs_are_the_whole_answers_chunk_by_chunk(server):
    options = dict(model='tiny', prompt=PROMPTS[4], n=2, seed=6, max_tokens=8, logprobs=2,
                   echo=True, extra_body={'stop_at_endoftext': False})
    whole = server.client().completions.create(**options)
    parts = {}
    for chunk in server.client().completions.create(stream=True, **options):
        choice = chunk.choices[0]
        got = parts.setdefault(choice.index, {'text': '', 'tokens': [], 'token_logprobs': [],
                                              'top_logprobs': [], 'text_offset': []})
        got['text'] += choice.text
        for name in ('tokens', 'token_logprobs', 'top_logprobs', 'text_offset'):
            got[name] += getattr(choice.logprobs, name) if choice.logprobs else []
    for choice in whole.choices:
        got = parts[choice.index]
        assert got['text'] == choice.text
        for name in ('tokens', 'token_logprobs', 'top_logprobs', 'text_offset'):
            assert got[name] == getattr(choice.logprobs, name), name


def test_an_empty_prompt_is_echoed_once_in_a_stream(server, api, vocab_dir):
    """Echoed at the first event, once, also when the first tokens' text is held back
    (a token ending inside a character) and the echoed text is empty."""
    enc = encoder.load_encoder(vocab_dir)
    seed = 0
    while True:  # a seed whose first token is part of a character
        seed += 1
        first = api('', 1, seed, length=1, stop_at_endoftext=False, return_tokens=True)[0]
        if enc.token_text(first[0]).startswith('bytes:'):
            break
    chunks = list(server.client().completions.create(
        model='tiny', prompt='', echo=True, logprobs=1, max_tokens=4, seed=seed,
        stream=True, extra_body={'stop_at_endoftext': False}))
    echoed = [c for c in chunks if c.choices and c.choices[0].logprobs
              and c.choices[0].logprobs.token_logprobs[:1] == [None]]
    assert len(echoed) == 1
    assert sum(len(c.choices[0].logprobs.tokens) for c in chunks
               if c.choices and c.choices[0].logprobs) == 1 + 4  # <|endoftext|>, 4 new
