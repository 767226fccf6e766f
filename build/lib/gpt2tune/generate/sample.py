"""Sampling: the options, the choice of each next token (logit bias, repetition, presence
and frequency penalties, temperature, top-k, nucleus, min-p) with a random generator per
row (Seeds), and where a sample ends (<|endoftext|>, stop texts). NumPy only: engine.py
runs the model and calls these.

    options = SamplingOptions(length=100, temperature=0.7, top_k=40).checked(hparams)
    tokens = choose(logits, options, Seeds(1).take(len(logits)))
"""

import dataclasses
import types

import numpy as np

from gpt2tune.errors import UserError

# Candidates tried before sorting the whole vocabulary for nucleus sampling.
NUCLEUS_POOL = 1024


def option(default, help, *, low=None, above=None, high=None):
    """A field of SamplingOptions: its default, its help line, and its limits (at least
    `low`, more than `above`, at most `high`; a name such as 'n_vocab' is the model's).
    The sampling scripts' flags, the API's keywords, train.py's sample settings and the
    table in docs/generating.md are all read from these fields; `checked` derives from
    the limits."""
    return dataclasses.field(default=default, metadata={
        'help': help, 'low': low, 'above': above, 'high': high})


class OptionError(UserError):
    """A bad sampling option; `param` is its field name, however the surface calls it."""

    def __init__(self, param, message):
        super().__init__(message)
        self.param = param


@dataclasses.dataclass(frozen=True)
class SamplingOptions:
    length: int | None = option(
        None, 'Number of tokens in generated text, if None (default), is determined by model '
        'hyperparameters; beyond the context window the window slides', low=1)
    temperature: float = option(
        1.0, 'Float value controlling randomness in boltzmann distribution.', above=0)
    top_k: int = option(
        0, 'Integer value controlling diversity: keep the k most likely tokens (0: all)',
        low=0, high='n_vocab')
    top_p: float = option(
        1.0, 'Float, nucleus sampling: keep the most likely tokens up to this probability '
        '(1 or 0: off)', low=0, high=1)
    min_p: float = option(
        0.0, 'Float: keep the tokens at least this fraction as likely as the most likely one '
        '(0: off)', low=0, high=1)
    repetition_penalty: float = option(
        1.0, 'CTRL\'s penalty on tokens already in the sample (1: off, 1.2 is common)',
        above=0)
    presence_penalty: float = option(
        0.0, 'OpenAI\'s presence penalty: subtracted from the logit of each token already '
        'generated in the sample (0: off)', low=-2, high=2)
    frequency_penalty: float = option(
        0.0, 'OpenAI\'s frequency penalty: subtracted from a token\'s logit once for each '
        'time it was already generated in the sample (0: off)', low=-2, high=2)
    logit_bias: dict | None = option(
        None, 'Added to these tokens\' logits before the rest (-100 bans a token, 100 forces '
        'it)')
    stop: tuple[str, ...] = option(
        (), 'end a sample before this text (repeatable; \\n is a newline)')
    stop_at_endoftext: bool = option(True, 'end each sample at <|endoftext|>')

    def changed(self, **values):
        """These options with some changed; a name that is not an option is an
        OptionError."""
        for name in values:
            if name not in OPTIONS:
                raise OptionError(name, f'{name}: unexpected keyword; sampling options are '
                                  f'{", ".join(OPTIONS)}')
        return dataclasses.replace(self, **values)

    def checked(self, hparams, flags=None):
        """These options with `length` resolved (None: half the context, as OpenAI's) and
        `stop` a tuple, or an OptionError. Messages name each option `--name`, unless
        `flags` says how this surface names it ({'length': '--sample_length'})."""
        length = hparams.n_ctx // 2 if self.length is None else self.length
        stop = (self.stop,) if isinstance(self.stop, str) else self.stop
        bias = _logit_bias(self.logit_bias, hparams, (flags or {}).get('logit_bias',
                                                                         '--logit_bias'))
        resolved = dataclasses.replace(self, length=length, stop=stop, logit_bias=bias)
        for field in dataclasses.fields(self):
            problem = _problem(field, getattr(resolved, field.name), hparams)
            if problem:
                flag = (flags or {}).get(field.name, f'--{field.name}')
                raise OptionError(field.name, flag + problem)
        return dataclasses.replace(resolved, stop=tuple(stop))


OPTIONS = {field.name: field for field in dataclasses.fields(SamplingOptions)}


def value_type(annotation):
    """int for `int` and `int | None`, tuple for `tuple[str, ...]`, and so on."""
    if isinstance(annotation, types.UnionType):
        annotation = next(t for t in annotation.__args__ if t is not type(None))
    return getattr(annotation, '__origin__', annotation)


def limits(field, hparams=None):
    """What a field's value must be, in words; with hparams, named limits have values."""
    meta, kind = field.metadata, value_type(field.type)
    if kind is bool:
        return 'True or False'
    if kind is tuple:
        return 'non-empty texts'
    if kind is dict:
        return '{token id: bias from -100 to 100}'
    high = meta['high']
    if isinstance(high, str) and hparams is not None:
        high = f'{high} {getattr(hparams, high)}'
    whole = kind is int
    if meta['low'] is not None and high is not None:
        return f'between {meta["low"]} and {high}' + (' (a whole number)' if whole else '')
    bound = f'at least {meta["low"]}' if meta['low'] is not None else f'above {meta["above"]}'
    return ('a whole number, ' if whole else '') + bound


def _problem(field, value, hparams):
    """' value: must be ...' (to follow the flag) when `value` is outside the field's
    limits, else None."""
    meta, kind = field.metadata, value_type(field.type)
    if kind is dict:  # judged whole, by _logit_bias
        return None
    if kind is tuple:
        fits = isinstance(value, tuple | list) and all(isinstance(s, str) and s for s in value)
        return None if fits else ': each stop text must be a non-empty string'
    if kind is bool:
        fits = isinstance(value, bool)
    else:
        high = getattr(hparams, meta['high']) if isinstance(meta['high'], str) else meta['high']
        fits = (isinstance(value, int if kind is int else (int, float))
                and not isinstance(value, bool)
                and (meta['low'] is None or value >= meta['low'])
                and (meta['above'] is None or value > meta['above'])
                and (high is None or value <= high))
    return None if fits else f' {value}: must be {limits(field, hparams)}'


def _logit_bias(bias, hparams, flag):
    """{token id: bias} from a mapping whose keys may be texts of ids (JSON's keys are),
    None for none; an OptionError names what is wrong."""
    if bias is None:
        return None
    if not isinstance(bias, dict):
        raise OptionError('logit_bias', f'{flag}: must be a mapping of token ids to biases')
    checked = {}
    for key, value in bias.items():
        token = int(key) if isinstance(key, str) and key.strip().isdigit() else key
        if not isinstance(token, int) or isinstance(token, bool) or not (
                0 <= token < hparams.n_vocab):
            raise OptionError('logit_bias', f'{flag} {key!r}: token ids are from 0 to '
                              f'{hparams.n_vocab - 1}')
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                -100 <= value <= 100):
            raise OptionError('logit_bias', f'{flag} {key}: {value!r}: biases are numbers '
                              'from -100 to 100')
        checked[token] = float(value)
    return checked or None


def check_batch_size(batch_size):
    """Rows sampled at once (speed and memory only): a whole number, at least 1."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f'--batch_size {batch_size}: must be a whole number, at least 1')


def penalize(logits, seen, penalty):
    """CTRL's repetition penalty (Keskar et al., 2019): the logits [batch, n_vocab] of
    tokens already in the row (seen [batch, n_vocab] bool) are divided by `penalty` where
    positive and multiplied by it where negative, so they always become less likely."""
    return np.where(seen, np.where(logits > 0, logits / penalty, logits * penalty), logits)


def _kept(row, top_k, top_p):
    """Candidate tokens of one row of logits, most likely first, and their logits."""
    if top_k:
        pool = np.argpartition(-row, top_k - 1)[:top_k]
        pool = pool[np.argsort(-row[pool], kind='stable')]
    elif 0 < top_p < 1 and len(row) > NUCLEUS_POOL:
        pool = np.argpartition(-row, NUCLEUS_POOL - 1)[:NUCLEUS_POOL]
    else:
        pool = np.arange(len(row))
    if not 0 < top_p < 1:
        return pool, row[pool]
    normalizer = np.logaddexp.reduce(row[pool] if top_k else row)
    if not top_k:
        pool = pool[np.argsort(-row[pool], kind='stable')]
    cumulative = np.cumsum(np.exp(row[pool] - normalizer))
    if cumulative[-1] < top_p and len(pool) < len(row):  # the pool was too small
        return _kept_sorted(row, np.argsort(-row, kind='stable'), normalizer, top_p)
    return _kept_sorted(row, pool, normalizer, top_p, cumulative)


def _kept_sorted(row, order, normalizer, top_p, cumulative=None):
    """The smallest prefix of `order` whose probability reaches top_p (at least one)."""
    if cumulative is None:
        cumulative = np.cumsum(np.exp(row[order] - normalizer))
    n_kept = min(int(np.sum(cumulative < top_p)) + 1, len(order))
    return order[:n_kept], row[order[:n_kept]]


def choose(logits, options, rngs, seen=None, counts=None):
    """The next token of each row of logits [batch, n_vocab]: logit bias, repetition
    penalty (`seen` [batch, n_vocab] bool: tokens of the prompt and sample), presence and
    frequency penalties (`counts` [batch, n_vocab]: times each token was generated),
    temperature, top-k, then nucleus and min-p among what top-k kept; one uniform draw
    from each row's own generator (rngs)."""
    logits = np.array(logits, np.float64)
    if options.logit_bias:
        tokens = list(options.logit_bias)
        logits[:, tokens] += np.array([options.logit_bias[t] for t in tokens])
    if options.repetition_penalty != 1 and seen is not None:
        logits = penalize(logits, seen, options.repetition_penalty)
    if counts is not None:  # OpenAI's definitions, on the tokens generated so far
        logits -= counts * options.frequency_penalty + (counts > 0) * options.presence_penalty
    logits = logits / options.temperature
    tokens = np.empty(len(logits), np.int64)
    for b, (row, rng) in enumerate(zip(logits, rngs, strict=True)):
        candidates, values = _kept(row, options.top_k, options.top_p)
        if options.min_p:  # relative to the top token: a threshold on the logits
            kept = values >= values.max() + np.log(options.min_p)
            candidates, values = candidates[kept], values[kept]
        weights = np.cumsum(np.exp(values - values.max()))
        index = np.searchsorted(weights, rng.random() * weights[-1], side='right')
        tokens[b] = candidates[min(index, len(candidates) - 1)]
    return tokens


class Stopper:
    """Where a sample ends: before <|endoftext|> (unless turned off) or before the first
    of the stop texts."""

    def __init__(self, enc, options):
        self.enc = enc
        self.eot = enc.eot_token if options.stop_at_endoftext else None
        self.stop = options.stop

    def cut(self, tokens):
        """(tokens kept, text) once `tokens` hold an end, else None. A stop text may
        begin inside a token: the text is cut exactly, the ids before that token."""
        if tokens and tokens[-1] == self.eot:
            return len(tokens) - 1, self.enc.decode(tokens[:-1])
        if not self.stop:
            return None
        text = self.enc.decode(tokens)
        found = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        if not found:
            return None
        end = min(found)
        kept = len(tokens)
        while kept and len(self.enc.decode(tokens[:kept])) > end:
            kept -= 1
        return kept, text[:end]

    def finish(self, tokens):
        """(tokens kept, text) of a sample, ended or not."""
        return self.cut(tokens) or (len(tokens), self.enc.decode(tokens))


@dataclasses.dataclass
class Sample:
    prompt: list  # token ids the sample continues
    tokens: list  # generated token ids, up to where the sample ended
    text: str  # generated text, cut exactly at a stop text


class Seeds:
    """A random generator for each row a model samples, the k-th from (seed, k): a row's
    draws never depend on how rows are batched, so the same seed gives the same samples
    at any batch size, alone or beside other requests. seed None: fresh entropy."""

    def __init__(self, seed=None):
        self.entropy = np.random.SeedSequence(seed).entropy
        self.taken = 0

    def take(self, n):
        """Generators for the next n rows."""
        first, self.taken = self.taken, self.taken + n
        return [np.random.default_rng(np.random.SeedSequence(self.entropy, spawn_key=(k,)))
                for k in range(first, first + n)]
