"""The sampler on fake logits: token choice, each row's generator, stops; the options'
declaration and the table of it in docs/generating.md."""

import dataclasses
import os
import re

import numpy as np
import pytest

from fixtures import ROOT
from gpt2tune.errors import UserError
from gpt2tune.generate import sample
from gpt2tune.model.hparams import HParams

LOGITS = np.array([[1.0, 3.0, 2.0, 0.0, -1.0],
                   [0.0, 0.0, 5.0, 4.9, 1.0]])
HPARAMS = HParams(n_vocab=5, n_ctx=8, n_embd=4, n_head=1, n_layer=1)


class ScriptedRng:
    """A uniform draw given in advance, so a choice can be worked out by hand."""

    def __init__(self, draw):
        self.draw = draw

    def random(self):
        return self.draw


def rngs(*draws):
    """One scripted generator per row."""
    return [ScriptedRng(d) for d in draws]


def options(**values):
    return sample.SamplingOptions(**values).checked(HPARAMS)


def test_top_k_draws_among_the_k_largest_by_probability():
    # Row 0 keeps tokens 1 (logit 3) and 2 (logit 2): probabilities e/(e+1) = .731, .269.
    # A draw of .72 falls in token 1's share, .74 in token 2's; row 1 keeps 2 and 3
    # (.525, .475): .74 draws 3, .51 draws 2.
    o = options(top_k=2)
    assert sample.choose(LOGITS, o, rngs(0.72, 0.74)).tolist() == [1, 3]
    assert sample.choose(LOGITS, o, rngs(0.74, 0.51)).tolist() == [2, 2]


def test_top_p_keeps_the_smallest_set_reaching_p():
    # Row 0 sorted probabilities: .636 .234 .086 .032 .012 (tokens 1 2 0 3 4); p .8 keeps
    # tokens 1 and 2 (.870), p .5 only 1.
    assert sample.choose(LOGITS[:1], options(top_p=0.8), rngs(0.99)).tolist() == [2]
    assert sample.choose(LOGITS[:1], options(top_p=0.5), rngs(0.99)).tolist() == [1]


def test_min_p_keeps_tokens_at_least_that_fraction_as_likely_as_the_top_one():
    # Relative to each row's top token: row 0 [.135 1 .368 .050 .018], row 1 [.007 .007 1
    # .905 .018]. min_p .3 keeps tokens 1, 2 (.731, .269 once renormalised) and 2, 3 (.525,
    # .475): .72 draws 1, .74 draws 3. min_p .4 keeps token 1 alone in row 0.
    o = options(min_p=0.3)
    assert sample.choose(LOGITS, o, rngs(0.72, 0.74)).tolist() == [1, 3]
    assert sample.choose(LOGITS, o, rngs(0.74, 0.51)).tolist() == [2, 2]
    assert sample.choose(LOGITS[:1], options(min_p=0.4), rngs(0.99)).tolist() == [1]
    # After temperature: at .5 token 2 is e^-2 = .135 of token 1, below .3.
    assert sample.choose(LOGITS[:1], options(min_p=0.3, temperature=0.5),
                         rngs(0.99)).tolist() == [1]


def test_nucleus_past_the_candidate_pool_sorts_the_whole_vocabulary(monkeypatch):
    monkeypatch.setattr(sample, 'NUCLEUS_POOL', 2)
    # Flat logits: two candidates hold 2/5 of the mass, p .7 needs four tokens.
    flat = np.zeros([1, 5])
    hparams = HParams(n_vocab=5, n_ctx=8, n_embd=4, n_head=1, n_layer=1)
    o = sample.SamplingOptions(top_p=0.7).checked(hparams)
    assert sample.choose(flat, o, rngs(0.99)).tolist() == [3]


def test_temperature_sharpens_before_the_draw():
    # Logits [3, 2] at temperature .5 become [6, 4]: token 1 has e^2/(e^2+1) = .881.
    assert sample.choose(LOGITS[:1], options(top_k=2, temperature=0.5),
                         rngs(0.88)).tolist() == [1]
    assert sample.choose(LOGITS[:1], options(top_k=2, temperature=1.0),
                         rngs(0.88)).tolist() == [2]


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    seen = np.array([[False, True, False, False, True], [False, False, True, False, False]])
    got = sample.penalize(LOGITS, seen, 2.0)
    np.testing.assert_array_equal(got, [[1.0, 1.5, 2.0, 0.0, -2.0],
                                        [0.0, 0.0, 2.5, 4.9, 1.0]])
    # Greedy choice moves from token 1 to 2 in row 0, from 2 to 3 in row 1.
    o = options(top_k=1, repetition_penalty=2.0)
    assert sample.choose(LOGITS, o, rngs(0, 0), seen).tolist() == [2, 3]


def test_presence_and_frequency_penalties_follow_openais_definitions():
    logits = np.array([[1.0, 0.9, 0.0, 0.0, 0.0]])
    counts = np.array([[2, 0, 0, 0, 0]])
    greedy = dict(top_k=1)
    # 1.0 - 2 * 0.1 = 0.8 < 0.9; 1.0 - 2 * 0.04 = 0.92 > 0.9
    assert sample.choose(logits, options(frequency_penalty=0.1, **greedy), rngs(0),
                         counts=counts).tolist() == [1]
    assert sample.choose(logits, options(frequency_penalty=0.04, **greedy), rngs(0),
                         counts=counts).tolist() == [0]
    # Presence counts once however often: 1.0 - 0.2 = 0.8 < 0.9; 1.0 - 0.05 > 0.9.
    assert sample.choose(logits, options(presence_penalty=0.2, **greedy), rngs(0),
                         counts=counts).tolist() == [1]
    assert sample.choose(logits, options(presence_penalty=0.05, **greedy), rngs(0),
                         counts=counts).tolist() == [0]
    # Negative values favour what was generated: 0.9 + 2 * 0.3 beats 1.0 when it is token 1.
    assert sample.choose(logits, options(frequency_penalty=-0.3, **greedy), rngs(0),
                         counts=np.array([[0, 2, 0, 0, 0]])).tolist() == [1]


def test_logit_bias_bans_and_forces_tokens_by_id():
    logits = np.array([[1.0, 0.9, 0.0, 0.0, 0.0]])
    assert sample.choose(logits, options(top_k=1, logit_bias={0: -100}), rngs(0)).tolist() == [1]
    assert sample.choose(logits, options(logit_bias={'3': 100}), rngs(0.99)).tolist() == [3]
    assert options(logit_bias={'3': 5, 1: -1.5}).logit_bias == {3: 5.0, 1: -1.5}
    for bad, named in (({5: 1}, "--logit_bias 5: token ids are from 0 to 4"),
                       ({'x': 1}, "--logit_bias 'x'"), ({1: 101}, '--logit_bias 1: 101'),
                       ({1: 'a'}, "--logit_bias 1: 'a'"), ([1], '--logit_bias: must be')):
        with pytest.raises(sample.OptionError, match=re.escape(named)) as e:
            options(logit_bias=bad)
        assert e.value.param == 'logit_bias'


def test_bad_options_name_the_flag():
    for values, message in [({'top_k': 6}, '--top_k 6: must be between 0'),
                            ({'top_p': 1.5}, '--top_p 1.5'),
                            ({'temperature': 0}, '--temperature 0: must be above 0'),
                            ({'repetition_penalty': 0}, '--repetition_penalty 0'),
                            ({'length': 0}, '--length 0'),
                            ({'stop': ('',)}, '--stop: each stop text')]:
        with pytest.raises(UserError, match=message):
            options(**values)
    with pytest.raises(UserError, match='--sample_length 0'):
        sample.SamplingOptions(length=0).checked(HPARAMS, {'length': '--sample_length'})
    assert options().length == HPARAMS.n_ctx // 2


def test_a_bad_option_names_its_field_however_the_surface_calls_it():
    for values, param, message in [
            ({'length': 0}, 'length', 'max_tokens 0: must be a whole number, at least 1'),
            ({'top_k': 2.0}, 'top_k', 'top_k 2.0: must be between 0 and n_vocab 5 '
                                      r'\(a whole number\)'),
            ({'top_p': 'x'}, 'top_p', 'top_p x: must be between 0 and 1'),
            ({'stop_at_endoftext': 1}, 'stop_at_endoftext', 'must be True or False'),
            ({'stop': 5}, 'stop', 'each stop text')]:
        with pytest.raises(sample.OptionError, match=message) as caught:
            sample.SamplingOptions(**values).checked(
                HPARAMS, {f: f for f in sample.OPTIONS} | {'length': 'max_tokens'})
        assert caught.value.param == param
    with pytest.raises(sample.OptionError, match='top_z: unexpected keyword') as caught:
        sample.SamplingOptions().changed(top_z=3)
    assert caught.value.param == 'top_z'


def readme_table_row(field):
    cells = [f'`{field.name}`', f'`{field.default!r}`', sample.limits(field),
             field.metadata['help']]
    return '| ' + ' | '.join(c.replace('|', '\\|') for c in cells) + ' |'


def test_the_docs_table_lists_every_sampling_option_as_declared():
    with open(os.path.join(ROOT, 'docs', 'generating.md'), encoding='utf-8') as f:
        readme = f.read()
    table = re.search(r'<!-- sampling options -->\n(.*?)\n\n', readme, re.S).group(1)
    expected = [readme_table_row(f) for f in dataclasses.fields(sample.SamplingOptions)]
    assert table.splitlines()[2:] == expected, ('docs/generating.md table rows:\n'
                                               + '\n'.join(expected))


def test_seeds_give_row_k_the_same_draws_however_rows_are_taken():
    together = [g.random(3).tolist() for g in sample.Seeds(5).take(4)]
    seeds = sample.Seeds(5)
    one_by_one = [g.random(3).tolist() for _ in range(4) for g in seeds.take(1)]
    assert together == one_by_one
    assert len({tuple(d) for d in together}) == 4  # each row its own draws
    assert together != [g.random(3).tolist() for g in sample.Seeds(6).take(4)]
    # Row 1 of a seed is not row 0 of the next seed.
    assert together[1] != [g.random(3).tolist() for g in sample.Seeds(6).take(1)][0]
    fresh = [g.random() for g in sample.Seeds(None).take(1)]
    assert fresh != [g.random() for g in sample.Seeds(None).take(1)]

