"""The console scripts' functions (pyproject.toml's [project.scripts]): each runs one
command's main on the process's arguments."""


import importlib
import sys


def run(name):
    """Run gpt2tune.commands.<name>'s main on this process's arguments, a user's error
    ending it with one line (cli.run)."""
    from gpt2tune import cli
    cli.run(importlib.import_module(f'gpt2tune.commands.{name}').main, sys.argv[1:])


def _command(name):
    def command():
        run(name)
    command.__name__ = name
    return command


train = _command('train')
encode = _command('encode')
prepare = _command('prepare_text')
prepare_jokes = _command('prepare_jokes')
sample = _command('interactive_conditional_samples')
sample_unconditional = _command('generate_unconditional_samples')
score = _command('score')
serve = _command('serve')
huggingface = _command('huggingface')
peft = _command('peft')
savedmodel = _command('export_savedmodel')
lora = _command('lora')
init = _command('init_model')
doctor = _command('doctor')
plot = _command('plot_run')
