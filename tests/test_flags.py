"""Flags declared once (flags.py), as each kind of command line sees them: fire's view of
a 2019 script with the sampling options beside its own flags, argparse, and TrainConfig."""

import argparse
import dataclasses
import inspect

import fire

from gpt2tune.commands.sample_flags import fire_argv
from gpt2tune.flags import FLAGS, SHARED, add, fire_command
from gpt2tune.generate import sample
from gpt2tune.train import train_config

FIELDS = [f.name for f in dataclasses.fields(sample.SamplingOptions)]


def script(options, model_name=SHARED, seed=SHARED, batch_size=3, models_dir=SHARED):
    """A script of the 2019 kind.

    :batch_size=3 : Number of rows sampled at once
     (a continuation line)
    """
    return options, model_name, seed, batch_size, models_dir


COMMAND = fire_command(options_after='batch_size')(script)


def test_every_option_is_a_flag_with_its_default_after_the_given_one():
    parameters = inspect.signature(COMMAND).parameters
    assert list(parameters) == ['model_name', 'seed', 'batch_size', *FIELDS, 'models_dir']
    assert [parameters[n].default for n in FIELDS] == [
        f.default for f in dataclasses.fields(sample.SamplingOptions)]


def test_shared_flags_take_their_declared_default_and_the_scripts_own_keep_theirs():
    parameters = inspect.signature(COMMAND).parameters
    assert parameters['model_name'].default == FLAGS['model_name'].default == '117M'
    assert parameters['models_dir'].default == 'models'
    assert parameters['batch_size'].default == 3


def test_every_flag_has_its_help_line_in_signature_order():
    lines = COMMAND.__doc__.splitlines()
    starts = [line.split(' ')[0] for line in lines if line.startswith(':')]
    assert starts == [':model_name=117M', ':seed=None', ':batch_size=3',
                      *(f':{f.name}={f.default}' for f in dataclasses.fields(
                          sample.SamplingOptions)), ':models_dir=models']
    unwrapped = COMMAND.__doc__.replace('\n ', ' ')
    assert ':top_k=0 : ' + sample.OPTIONS['top_k'].metadata['help'] + '\n' in unwrapped
    assert ':batch_size=3 : Number of rows sampled at once (a continuation line)\n' in unwrapped
    assert unwrapped.endswith(':models_dir=models : ' + FLAGS['models_dir'].help)


def test_fire_hands_the_script_its_flags_and_the_options():
    options, model_name, seed, batch_size, models_dir = fire.Fire(
        COMMAND, command=fire_argv(['--top_k', '40', '--seed', '2', '--stop', 'a\\n',
                                    '--nostop_at_endoftext', '--models_dir', 'm']))
    assert options == sample.SamplingOptions(top_k=40, stop=('a\n',), stop_at_endoftext=False)
    assert (model_name, seed, batch_size, models_dir) == ('117M', 2, 3, 'm')
    # The 2019 order holds for positional values too: model_name, seed, batch_size, length.
    options, model_name, *_ = fire.Fire(COMMAND, command=['tiny', '1', '2', '7'])
    assert (model_name, options.length) == ('tiny', 7)


def test_a_command_without_options_gets_its_shared_flags():
    def score(path, verbose=SHARED):
        """Score a file.

        :path : the file
        """
        return path, verbose

    command = fire_command()(score)
    assert command.__doc__.replace('\n ', ' ').endswith(':verbose=False : ' + FLAGS['verbose'].help)
    assert fire.Fire(command, command=['x']) == ('x', False)
    assert fire.Fire(command, command=['x', '--verbose']) == ('x', True)


def test_argparse_and_train_config_take_the_same_declaration():
    parser = argparse.ArgumentParser()
    add(parser, 'model_name', 'seed', 'verbose')
    add(parser, 'vocab_dir', required=True)
    args = parser.parse_args(['--vocab_dir', 'v', '--seed', '4'])
    assert vars(args) == dict(model_name='117M', seed=4, verbose=False, vocab_dir='v')
    fields = {f.name: f for f in dataclasses.fields(train_config.TrainConfig)}
    for name in ('model_name', 'models_dir', 'combine', 'encoding', 'seed'):
        assert fields[name].default == FLAGS[name].default
        assert fields[name].metadata['help'] == FLAGS[name].help


def test_the_sampling_scripts_keep_the_2019_positional_order():
    from gpt2tune.commands import generate_unconditional_samples, interactive_conditional_samples
    openai_2019 = ['model_name', 'seed', 'nsamples', 'batch_size', 'length', 'temperature',
                   'top_k', 'top_p', 'models_dir']
    for command in (interactive_conditional_samples.interact_model,
                    generate_unconditional_samples.sample_model):
        assert list(inspect.signature(command).parameters)[:9] == openai_2019
