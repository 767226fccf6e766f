"""errors.py: UserError, the one kind of error reported as a user's mistake, and
user_path, which expands `~` and `$VARS` in a path from a flag and does nothing else."""

import os

import pytest

from gpt2tune.errors import UserError, user_path


def test_a_user_error_carries_its_message_as_its_text():
    with pytest.raises(UserError) as caught:
        raise UserError('--steps: must be 0 or more')
    assert str(caught.value) == '--steps: must be 0 or more'


def test_a_user_error_is_no_builtin_error_kind_so_a_bug_is_never_taken_for_one():
    # cli.run reports UserError as one line; a program's ValueError or OSError must not be.
    assert not issubclass(UserError, (ValueError, TypeError, KeyError, OSError, RuntimeError))
    assert not isinstance(ValueError('bug'), UserError)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    return str(tmp_path)


def test_a_leading_tilde_is_the_home_folder(home):
    assert user_path('~/models/124M') == os.path.join(home, 'models', '124M')


def test_variables_are_expanded_in_both_spellings(monkeypatch):
    monkeypatch.setenv('GPT2_DATA', '/srv/data')
    assert user_path('$GPT2_DATA/jokes.txt') == '/srv/data/jokes.txt'
    assert user_path('${GPT2_DATA}-old/jokes.txt') == '/srv/data-old/jokes.txt'


def test_a_variable_holding_a_tilde_ends_in_the_home_folder(home, monkeypatch):
    monkeypatch.setenv('RUNS', '~/runs')
    assert user_path('$RUNS/run1') == os.path.join(home, 'runs', 'run1')


def test_an_unset_variable_is_left_as_written(monkeypatch):
    monkeypatch.delenv('NO_SUCH_VARIABLE_HERE', raising=False)
    assert user_path('$NO_SUCH_VARIABLE_HERE/x') == '$NO_SUCH_VARIABLE_HERE/x'


@pytest.mark.parametrize('path', ['checkpoint/run1', 'input-text.txt', '../data', '/abs/x',
                                  'a~b/c'])
def test_a_path_without_tilde_or_variable_is_returned_unchanged(path, home):
    assert user_path(path) == path  # relative stays relative: no abspath, no normalising
