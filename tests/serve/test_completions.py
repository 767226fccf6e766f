"""serve/completions.py without a server: an OpenAI completions body checked into a
CompletionRequest (or an ApiError naming the parameter), usage, the logprobs object, the
whole answer and a stream's chunk; the model is a vocabulary and its hparams."""

import types

import pytest

from gpt2tune.data import encoder
from gpt2tune.model.hparams import HParams
from gpt2tune.serve import completions
from gpt2tune.serve.completions import ApiError

MAX_ROWS = 8


@pytest.fixture(scope='module')
def loaded(vocab_dir):
    enc = encoder.load_encoder(vocab_dir)
    return types.SimpleNamespace(encoder=enc, hparams=HParams(
        n_vocab=enc.n_vocab, n_ctx=64, n_embd=32, n_head=4, n_layer=2))


def request(loaded, **body):
    return completions.parse(body, loaded, 'tiny', max_rows=MAX_ROWS)


def test_a_string_prompt_is_encoded_with_openais_defaults(loaded):
    got = request(loaded, prompt='Knock knock')
    assert got.prompts == [loaded.encoder.encode('Knock knock')] and got.texts == ['Knock knock']
    assert (got.n, got.seed, got.echo, got.stream, got.logprobs) == (1, None, False, False, None)
    assert got.options.length == 16 and got.generate  # OpenAI's max_tokens default


def test_token_id_prompts_are_kept_and_decoded_for_echo(loaded):
    ids = loaded.encoder.encode('Doctor, doctor')
    assert request(loaded, prompt=ids).prompts == [ids]  # a flat list: one prompt
    got = request(loaded, prompt=[ids, 'My dog'])
    assert got.prompts == [ids, loaded.encoder.encode('My dog')]
    assert got.texts == ['Doctor, doctor', 'My dog']


def test_an_empty_prompt_starts_after_endoftext(loaded):
    assert request(loaded, prompt='').prompts == [[loaded.encoder.eot_token]]


def test_openai_names_and_temperature_zero_map_onto_sampling_options(loaded):
    options = request(loaded, prompt='x', max_tokens=5, stop='|', temperature=0).options
    assert (options.length, options.stop, options.top_k) == (5, ('|',), 1)  # greedy


def test_max_tokens_zero_with_echo_scores_the_prompt_alone(loaded):
    got = request(loaded, prompt='x', max_tokens=0, echo=True, logprobs=1)
    assert not got.generate and got.prompt_logprobs


def test_neutral_fields_and_the_served_model_are_accepted(loaded):
    got = request(loaded, prompt='x', model='tiny', user='u', suffix='', best_of=1,
                  stream=True, stream_options={'include_usage': True})
    assert got.stream and got.include_usage


BAD = [  # (body, status, param)
    ([1, 2], 400, None), ({'prompt': 5}, 400, 'prompt'), ({'prompt': []}, 400, 'prompt'),
    ({'prompt': [[1, -1]]}, 400, 'prompt'), ({'prompt': [10 ** 9]}, 400, 'prompt'),
    ({'prompt': list(range(65))}, 400, 'prompt'), ({'prompt': 'word ' * 200}, 400, 'prompt'),
    ({'n': 0}, 400, 'n'), ({'n': '2'}, 400, 'n'), ({'n': True}, 400, 'n'),
    ({'n': MAX_ROWS + 1}, 400, 'n'), ({'prompt': ['a', 'b', 'c'], 'n': 3}, 400, 'n'),
    ({'max_tokens': 0}, 400, 'max_tokens'), ({'max_tokens': 65}, 400, 'max_tokens'),
    ({'max_tokens': -1}, 400, 'max_tokens'), ({'max_tokens': 2.5}, 400, 'max_tokens'),
    ({'temperature': -1}, 400, 'temperature'), ({'top_p': 1.5}, 400, 'top_p'),
    ({'top_p': 'a'}, 400, 'top_p'), ({'stop': [1]}, 400, 'stop'), ({'seed': -1}, 400, 'seed'),
    ({'stream': 'yes'}, 400, 'stream'), ({'foo': 1}, 400, 'foo'),
    ({'logprobs': 6}, 400, 'logprobs'), ({'logprobs': -1}, 400, 'logprobs'),
    ({'logit_bias': {'x': 1}}, 400, 'logit_bias'), ({'logit_bias': [1]}, 400, 'logit_bias'),
    ({'presence_penalty': 3}, 400, 'presence_penalty'), ({'best_of': 2}, 400, 'best_of'),
    ({'frequency_penalty': 'a'}, 400, 'frequency_penalty'), ({'suffix': 'x'}, 400, 'suffix'),
    ({'stream_options': {'include_usage': True}}, 400, 'stream_options'),
    ({'stream': True, 'stream_options': {'include_usage': 1}}, 400, 'stream_options'),
    ({'model': 'gpt-4'}, 404, 'model'),
]


@pytest.mark.parametrize('body, status, param', BAD)
def test_a_bad_body_is_an_api_error_naming_its_parameter(loaded, body, status, param):
    body = {'prompt': 'x', **body} if isinstance(body, dict) else body
    with pytest.raises(ApiError) as caught:
        completions.parse(body, loaded, 'tiny', max_rows=MAX_ROWS)
    assert (caught.value.status, caught.value.param) == (status, param)
    error = caught.value.body()['error']
    assert error['param'] == param and error['message'] and (param or 'body') in error['message']


def row(index, new, end, figures=(), prompt=(), prompt_figures=()):
    """A finished engine.Row: `end` is (tokens kept, text)."""
    return types.SimpleNamespace(index=index, new=new, end=end, finish_reason='stop',
                                 prompt=list(prompt), prompt_logprobs=list(prompt_figures),
                                 logprobs=list(figures))


def test_usage_counts_the_prompts_and_the_tokens_kept(loaded):
    got = request(loaded, prompt=[[1, 2], [3]])
    rows = [row(0, [5, 6, 7, 8], (3, 'abc')), row(1, [9], (0, ''))]
    assert completions.usage(got, rows) == {'prompt_tokens': 3, 'completion_tokens': 3,
                                            'total_tokens': 6}


def test_echo_puts_each_choices_own_prompt_before_its_text(loaded):
    got = request(loaded, prompt=['A', 'B'], n=2, echo=True)
    rows = [row(i, [], (0, str(i))) for i in range(4)]
    answer = completions.completion('cmpl-1', 'tiny', 0, got, rows, loaded.encoder)
    assert [c['text'] for c in answer['choices']] == ['A0', 'A1', 'B2', 'B3']
    assert all(c['logprobs'] is None for c in answer['choices'])  # not asked for


def test_logprobs_name_each_token_its_figures_and_where_it_starts(loaded):
    ids = loaded.encoder.encode('Knock knock, who')
    figures = [None] + [(-0.5 * i, {t: -0.1}) for i, t in enumerate(ids[1:], 1)]
    got = completions.logprobs_of(ids, figures, loaded.encoder)
    assert ''.join(got['tokens']) == 'Knock knock, who'
    assert got['text_offset'] == [sum(map(len, got['tokens'][:i])) for i in range(len(ids))]
    assert got['token_logprobs'] == [None] + [-0.5 * i for i in range(1, len(ids))]
    assert got['top_logprobs'][0] is None and got['top_logprobs'][1:] == [
        {loaded.encoder.decode([t]): -0.1} for t in ids[1:]]


def test_echoed_logprobs_start_with_the_prompt_and_stop_at_the_kept_tokens(loaded):
    got = request(loaded, prompt='Knock', echo=True, logprobs=0)
    prompt, new = got.prompts[0], loaded.encoder.encode(' knock!')
    kept = len(loaded.encoder.encode(' knock'))  # '!' is cut, as by a stop text
    prompt_figures = [None] + [(-2.0, {})] * (len(prompt) - 1)
    finished = row(0, new, (kept, ' knock'), [(-1.0, {})] * len(new), prompt, prompt_figures)
    figures = completions.logprobs(got, finished, loaded.encoder)
    assert ''.join(figures['tokens']) == 'Knock knock'
    assert figures['token_logprobs'] == [None] + [-2.0] * (len(prompt) - 1) + [-1.0] * kept


def test_logprobs_offsets_continue_after_the_tokens_before(loaded):
    before, ids = loaded.encoder.encode('Knock'), loaded.encoder.encode(' knock')
    got = completions.logprobs_of(ids, [(0.0, {})] * len(ids), loaded.encoder, before=before)
    assert got['text_offset'] == [len('Knock') + sum(map(len, got['tokens'][:i]))
                                  for i in range(len(ids))]


def test_a_chunk_carries_usage_only_when_given():
    plain = completions.chunk('c', 'tiny', 0, [(1, 'hi', None)])
    assert 'usage' not in plain and plain['choices'] == [
        {'text': 'hi', 'index': 1, 'logprobs': None, 'finish_reason': None}]
    last = completions.chunk('c', 'tiny', 0, [], {'total_tokens': 2})
    assert last['usage'] == {'total_tokens': 2}
