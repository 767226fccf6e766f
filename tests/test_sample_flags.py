"""The sampling scripts' flags as fire sees them: every sampling option from its one
declaration, beside the script's own flags."""

import dataclasses
import inspect

import fire
import pytest

import sample
from cli import UserError
from sample_flags import check_batches, fire_argv, with_sampling_flags

FIELDS = [f.name for f in dataclasses.fields(sample.SamplingOptions)]


def script(options, model_name='117M', seed=None, batch_size=1, models_dir='models'):
    """A script of the 2019 kind.

    :model_name=117M : String, which model to use
    :seed=None : Integer seed
    :batch_size=1 : Number of rows sampled at once
     (a continuation line)
    :models_dir : path to parent folder
    """
    return options, model_name, seed, batch_size, models_dir


COMMAND = with_sampling_flags(script, after='batch_size')


def test_every_option_is_a_flag_with_its_default_after_the_given_one():
    parameters = inspect.signature(COMMAND).parameters
    assert list(parameters) == ['model_name', 'seed', 'batch_size', *FIELDS, 'models_dir']
    assert [parameters[n].default for n in FIELDS] == [
        f.default for f in dataclasses.fields(sample.SamplingOptions)]


def test_every_option_has_its_help_line_after_the_given_ones_entry():
    lines = COMMAND.__doc__.splitlines()
    starts = [line.split('=')[0] for line in lines if line.startswith(':')]
    assert starts == [':model_name', ':seed', ':batch_size', *(f':{n}' for n in FIELDS),
                      ':models_dir : path to parent folder']
    unwrapped = COMMAND.__doc__.replace('\n ', ' ')
    assert ':top_k=0 : ' + sample.OPTIONS['top_k'].metadata['help'] + '\n' in unwrapped


def test_fire_hands_the_script_its_flags_and_the_options():
    options, model_name, seed, batch_size, models_dir = fire.Fire(
        COMMAND, command=fire_argv(['--top_k', '40', '--seed', '2', '--stop', 'a\\n',
                                    '--nostop_at_endoftext', '--models_dir', 'm']))
    assert options == sample.SamplingOptions(top_k=40, stop=('a\n',), stop_at_endoftext=False)
    assert (model_name, seed, batch_size, models_dir) == ('117M', 2, 1, 'm')
    # The 2019 order holds for positional values too: model_name, seed, batch_size, length.
    options, model_name, *_ = fire.Fire(COMMAND, command=['tiny', '1', '2', '7'])
    assert (model_name, options.length) == ('tiny', 7)


def test_batch_size_must_divide_nsamples_where_samples_come_a_batch_at_a_time():
    check_batches(4, 2)
    check_batches(0, 3)  # the unconditional script's "until interrupted"
    with pytest.raises(UserError, match='--nsamples 3 is not a multiple of --batch_size 2'):
        check_batches(3, 2)
    with pytest.raises(UserError, match='--batch_size 0: must be a whole number'):
        check_batches(3, 0)
