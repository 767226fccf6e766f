"""train.py's command (commands/train.py): --print_config, the run it starts, and the
signals it ignores once the run is over (the flags and the run itself: tests/train/)."""

import dataclasses
import json
import signal

import pytest

from gpt2tune import cli
from gpt2tune.commands import train as train_command
from gpt2tune.train import training
from gpt2tune.train.train_config import TrainConfig


@pytest.fixture
def signal_handlers():
    """SIGINT's and SIGTERM's handlers put back after the test."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.fixture
def no_tensorflow(monkeypatch):
    def refuse(verbose=False):
        raise AssertionError('TensorFlow started')
    monkeypatch.setattr(cli, 'start_tensorflow', refuse)


@pytest.fixture
def runs(monkeypatch):
    """The configs training.train is called with, TensorFlow not started."""
    called = []
    monkeypatch.setattr(cli, 'start_tensorflow', lambda verbose=False: None)
    monkeypatch.setattr(training, 'train', called.append)
    return called


def test_print_config_prints_the_settings_and_starts_nothing(no_tensorflow, capsys):
    train_command.main(['--dataset', 'jokes.npz', '--steps', '7', '--print_config'])
    assert json.loads(capsys.readouterr().out) == {
        **dataclasses.asdict(TrainConfig(dataset='jokes.npz')), 'steps': 7}


def test_a_run_trains_the_settings_of_its_flags(runs, signal_handlers):
    train_command.main(['--dataset', 'jokes.npz', '--steps', '7', '--optimizer', 'sgd'])
    assert runs == [TrainConfig(dataset='jokes.npz', steps=7, optimizer='sgd')]


def test_sigint_and_sigterm_are_ignored_once_the_run_is_over(runs, signal_handlers):
    """A late signal (a scheduler stopping every worker) cannot kill a saved run's exit."""
    train_command.main(['--dataset', 'jokes.npz'])
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
