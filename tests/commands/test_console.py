"""The console scripts (commands/console.py, pyproject.toml's [project.scripts]) and the
walkthrough's scripts that run the same mains: each answers --help without loading
TensorFlow."""

import os
import subprocess
import sys
import tomllib

import pytest

from fixtures import ROOT, script_env

# The walkthrough's scripts, by path.
SCRIPTS = ['train.py', 'encode.py', 'prepare_jokes.py', 'prepare_text.py',
           'src/interactive_conditional_samples.py',
           'src/generate_unconditional_samples.py']
# Every console script of pyproject.toml: (name, 'module:function').
with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    CONSOLE_SCRIPTS = sorted(tomllib.load(f)['project']['scripts'].items())


def answers_help_without_tensorflow(command):
    """Run `command` (the Python after sys.executable) with --help: its help shows and no
    TensorFlow module was imported."""
    result = subprocess.run([sys.executable, '-X', 'importtime', *command, '--help'],
                            capture_output=True, text=True, env=script_env(PAGER='cat'),
                            timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'usage:' in result.stdout or 'SYNOPSIS' in result.stderr  # argparse or fire
    imported = [line.split('|')[-1].strip() for line in result.stderr.splitlines()
                if line.startswith('import time:')]
    assert imported and not [m for m in imported if m.startswith('tensorflow')]


@pytest.mark.parametrize('script', SCRIPTS)
def test_walkthrough_script_answers_help_without_tensorflow(script):
    answers_help_without_tensorflow([f'{ROOT}/{script}'])


@pytest.mark.parametrize('name, target', CONSOLE_SCRIPTS)
def test_console_script_answers_help_without_tensorflow(name, target):
    module, function = target.split(':')
    answers_help_without_tensorflow(
        ['-c', f'import sys; sys.argv[0] = {name!r}; import {module}; {module}.{function}()'])
