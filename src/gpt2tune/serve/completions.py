"""OpenAI's completions schema: a request's JSON body checked into what the engine runs,
and the objects sent back (a completion, a stream's chunks, an error).

    request = parse(body, loaded, 'run1', max_rows=16)   # ApiError for anything wrong
    completion('cmpl-1', 'run1', created, request, job.rows)

The sampling options are sample.SamplingOptions' fields, each by its own name, so a new
option is served as soon as it is declared; OpenAI's names map onto them: `max_tokens`
is `length` (at most the context: beyond the prompt's room the window slides, as in the
API), `temperature` 0 means greedy (top_k 1).

`logprobs` N (0 to 5) gives each token's log-probability under the model (before the
sampling options reshape it) and the N likeliest alternatives, as OpenAI's legacy
completions do (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`, the offsets
into the choice's text); with `echo` the prompt's tokens come first, the first one's
figures null; `max_tokens` 0 with `echo` scores the prompt and generates nothing. A
stream's chunk carries the figures of the tokens chosen since the one before.
"""

import dataclasses
import types
import typing

from gpt2tune.errors import UserError
from gpt2tune.generate.generation import encode_prompt
from gpt2tune.generate.sample import SamplingOptions

OPENAI_NAMES = {'length': 'max_tokens'}
DEFAULT_MAX_TOKENS = 16  # OpenAI's default
# OpenAI's fields we take but whose only accepted values change nothing.
NEUTRAL = {'user': None, 'suffix': (None, ''), 'best_of': (None, 1)}
OURS = {'model', 'prompt', 'n', 'seed', 'echo', 'stream', 'stream_options', 'logprobs'}
MAX_LOGPROBS = 5  # OpenAI's limit


class ApiError(Exception):
    """An answer other than 200, as OpenAI's error object."""

    def __init__(self, status, message, param=None, code=None,
                 kind='invalid_request_error', headers=None):
        super().__init__(message)
        self.status, self.param, self.code, self.kind = status, param, code, kind
        self.headers = headers or {}

    def body(self):
        return {'error': {'message': str(self), 'type': self.kind, 'param': self.param,
                          'code': self.code}}


@dataclasses.dataclass
class CompletionRequest:
    prompts: list  # token lists
    texts: list  # each prompt as text, for echo
    n: int
    options: SamplingOptions  # checked
    seed: int | None
    echo: bool
    stream: bool
    include_usage: bool
    logprobs: int | None  # alternatives per token; None: no logprobs
    generate: bool  # False: max_tokens 0 with echo, the prompt scored alone

    @property
    def prompt_logprobs(self):
        """Whether the prompts' own figures are asked for (logprobs with echo)."""
        return self.echo and self.logprobs is not None


def option_names():
    """Request field -> SamplingOptions field."""
    return {OPENAI_NAMES.get(f.name, f.name): f.name
            for f in dataclasses.fields(SamplingOptions)}


def parse(body, loaded, model_id, max_rows):
    """A CompletionRequest from a JSON object, checked against the model `loaded`."""
    if not isinstance(body, dict):
        raise ApiError(400, 'the body must be a JSON object')
    names = option_names()
    unknown = sorted(set(body) - set(names) - OURS - set(NEUTRAL))
    if unknown:
        raise ApiError(400, f'{unknown[0]}: unknown parameter', unknown[0])
    for name, accepted in NEUTRAL.items():
        if accepted is not None and name in body and body[name] not in accepted:
            raise ApiError(400, f'{name}: not supported (only {accepted[1]!r})', name)
    check_model(body, model_id)
    n = _value(body, 'n', int, 1)
    prompts, texts = _prompts(body.get('prompt', ''), loaded)
    if not 1 <= n or n * len(prompts) > max_rows:
        raise ApiError(400, f'n {n}: must be at least 1, and n times the number of prompts '
                       f'at most --max_batch {max_rows}', 'n')
    seed = _value(body, 'seed', int, None)
    if seed is not None and seed < 0:
        raise ApiError(400, f'seed {seed}: must be at least 0', 'seed')
    stream = _value(body, 'stream', bool, False)
    stream_options = _value(body, 'stream_options', dict, None) or {}
    include_usage = stream_options.get('include_usage', False)
    if not stream and stream_options or not isinstance(include_usage, bool):
        raise ApiError(400, 'stream_options: only {"include_usage": true or false}, with '
                       'stream', 'stream_options')
    logprobs = _value(body, 'logprobs', int, None)
    if logprobs is not None and not 0 <= logprobs <= MAX_LOGPROBS:
        raise ApiError(400, f'logprobs {logprobs}: from 0 to {MAX_LOGPROBS}', 'logprobs')
    echo = _value(body, 'echo', bool, False)
    generate = not (_is(body.get('max_tokens'), int) and body['max_tokens'] == 0)
    if not generate and not echo:
        raise ApiError(400, 'max_tokens 0: only with echo (the prompt scored alone)',
                       'max_tokens')
    options = _options(body if generate else {**body, 'max_tokens': None}, names,
                       loaded.hparams)
    return CompletionRequest(prompts, texts, n, options, seed, echo, stream, include_usage,
                             logprobs, generate)


def check_model(body, model_id):
    """A 404 for a `model` other than the one served (null: absent, as OpenAI's servers
    take it)."""
    if not isinstance(body, dict):
        raise ApiError(400, 'the body must be a JSON object')
    if body.get('model') not in (None, model_id):
        raise ApiError(404, f'model {body["model"]!r}: not served here; this server serves '
                       f'{model_id!r}', 'model', 'model_not_found')


def tokenize(body, loaded):
    """The token ids of body["prompt"] (a string), as a completion's prompt gets them."""
    prompt = body.get('prompt')
    if not isinstance(prompt, str):
        raise ApiError(400, 'prompt: must be a string', 'prompt')
    return loaded.encoder.encode(prompt)


def detokenize(body, loaded):
    """The text of body["tokens"] (token ids)."""
    tokens, n_vocab = body.get('tokens'), loaded.hparams.n_vocab
    if not isinstance(tokens, list) or not all(_is(t, int) and 0 <= t < n_vocab
                                               for t in tokens):
        raise ApiError(400, f'tokens: must be a list of token ids from 0 to {n_vocab - 1}',
                       'tokens')
    return loaded.encoder.decode(tokens)


def _value(body, name, kind, default):
    """body[name] (None or absent: default) if of JSON type `kind`, else an ApiError."""
    value = body.get(name)
    if value is None:
        return default
    if not _is(value, kind):
        raise ApiError(400, f'{name}: must be {_KIND_NAMES.get(kind, kind.__name__)}', name)
    return value


_KIND_NAMES = {int: 'a whole number', float: 'a number', bool: 'true or false',
               dict: 'an object', str: 'a string'}


def _is(value, kind):
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _options(body, names, hparams):
    """Checked SamplingOptions from the request's sampling fields."""
    hints = typing.get_type_hints(SamplingOptions)
    values = {}
    for name, field in names.items():
        if body.get(name) is not None:
            values[field] = _field_value(body, name, hints[field])
    values.setdefault('length', DEFAULT_MAX_TOKENS)
    if values['length'] > hparams.n_ctx:
        raise ApiError(400, f'max_tokens {values["length"]}: at most the context, '
                       f'{hparams.n_ctx}', 'max_tokens')
    if values.get('temperature', 1) < 0:
        raise ApiError(400, f'temperature {values["temperature"]}: must be at least 0 '
                       '(0 is greedy)', 'temperature')
    if values.get('temperature') == 0:
        values.update(temperature=1.0, top_k=1)
    flags = {field: name for name, field in names.items()}
    try:
        return SamplingOptions(**values).checked(hparams, flags=flags)
    except UserError as e:
        param = getattr(e, 'param', None)
        raise ApiError(400, str(e), flags.get(param, param)) from None


def _field_value(body, name, hint):
    """body[name] if of a JSON type the SamplingOptions field annotated `hint` takes."""
    value = body[name]
    kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if typing.get_origin(hint) is tuple:  # texts: one or a list
        if isinstance(value, str) or (isinstance(value, list) and
                                      all(isinstance(v, str) for v in value)):
            return value
        raise ApiError(400, f'{name}: must be a string or a list of strings', name)
    for kind in kinds:
        if kind in _KIND_NAMES and _is(value, kind):
            return value
    known = [_KIND_NAMES[k] for k in kinds if k in _KIND_NAMES]
    if not known:  # a type this schema does not know: SamplingOptions.checked judges
        return value
    raise ApiError(400, f'{name}: must be {" or ".join(known)}', name)


def _prompts(prompt, loaded):
    """(token lists, texts) of a prompt: a string, a list of strings, token ids, or a
    list of token id lists."""
    if isinstance(prompt, str):
        prompt = [prompt]
    elif isinstance(prompt, list) and prompt and all(_is(t, int) for t in prompt):
        prompt = [prompt]
    if not isinstance(prompt, list) or not prompt or not all(
            isinstance(p, str) or (isinstance(p, list) and p and all(_is(t, int) for t in p))
            for p in prompt):
        raise ApiError(400, 'prompt: must be a string, a list of strings, a list of token '
                       'ids or a list of such lists', 'prompt')
    enc, n_vocab = loaded.encoder, loaded.hparams.n_vocab
    tokens, texts = [], []
    for p in prompt:
        if isinstance(p, list) and not all(0 <= t < n_vocab for t in p):
            raise ApiError(400, f'prompt: token ids must be from 0 to {n_vocab - 1}', 'prompt')
        if isinstance(p, list) and len(p) > loaded.hparams.n_ctx:
            raise ApiError(400, f'prompt: {len(p)} tokens, more than the model\'s context of '
                           f'{loaded.hparams.n_ctx}', 'prompt')
        try:
            tokens.append(p if isinstance(p, list) else encode_prompt(loaded, p))
        except UserError as e:
            raise ApiError(400, str(e), 'prompt') from None
        texts.append(p if isinstance(p, str) else enc.decode(p))
    return tokens, texts


def usage(request, rows):
    prompt = sum(len(p) for p in request.prompts)
    completion_tokens = sum(row.end[0] for row in rows)  # 0 for a prompt scored alone
    return {'prompt_tokens': prompt, 'completion_tokens': completion_tokens,
            'total_tokens': prompt + completion_tokens}


def completion(request_id, model_id, created, request, rows, encoder):
    """The whole answer once every row has ended."""
    choices = [{'text': (request.texts[r.index // request.n] if request.echo else '') +
                r.end[1], 'index': r.index, 'logprobs': logprobs(request, r, encoder),
                'finish_reason': r.finish_reason} for r in rows]
    return {'id': request_id, 'object': 'text_completion', 'created': created,
            'model': model_id, 'choices': choices, 'usage': usage(request, rows)}


def logprobs(request, row, encoder):
    """OpenAI's logprobs object of a finished row, or None when not asked for."""
    if request.logprobs is None:
        return None
    tokens, figures = row.new[:row.end[0]], row.logprobs[:row.end[0]]
    if request.echo:
        tokens, figures = row.prompt + tokens, row.prompt_logprobs + figures
    return logprobs_of(tokens, figures, encoder)


def logprobs_of(tokens, figures, encoder, before=()):
    """OpenAI's logprobs object of `tokens` and their engine.Row figures, after the
    tokens `before` them in the choice's text."""
    return {'tokens': [encoder.token_text(t) for t in tokens],
            'token_logprobs': [f and f[0] for f in figures],
            'top_logprobs': [f and {encoder.token_text(t): lp for t, lp in f[1].items()}
                             for f in figures],
            # Where each token starts in the choice's text (a token that ends inside a
            # character starts where the text of the tokens before it ends).
            'text_offset': [len(encoder.decode([*before, *tokens[:i]]))
                            for i in range(len(tokens))]}


def chunk(request_id, model_id, created, choices, usage_=None):
    """One server-sent event of a stream: choices [(index, text, finish_reason) or
    (index, text, finish_reason, logprobs object)]."""
    body = {'id': request_id, 'object': 'text_completion', 'created': created,
            'model': model_id, 'choices': [{'text': c[1], 'index': c[0],
                                            'logprobs': c[3] if len(c) > 3 else None,
                                            'finish_reason': c[2]} for c in choices]}
    if usage_ is not None:
        body['usage'] = usage_
    return body
