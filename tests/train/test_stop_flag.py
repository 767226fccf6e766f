"""Stopping a run (train/stop_flag.py): SIGTERM and SIGINT finish the step and save;
a second signal stops at once unless saving."""

import signal
import subprocess
import sys

import pytest

from fixtures import (
    script_env,
    start_held_run,
)


@pytest.mark.slow
def test_sigterm_finishes_the_step_saves_and_exits_0(tmp_path, models_dir, corpus):
    # The fake holds the run after step 3 until the signal: it comes during that step.
    proc = start_held_run(tmp_path, models_dir, corpus, 3)
    try:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert 'interrupted' in out and '[4 | ' not in out
    assert (tmp_path / 'checkpoint' / 'run1' / 'counter').read_text() == '3\n'
    assert (tmp_path / 'checkpoint' / 'run1' / 'model-3.index').exists()


@pytest.mark.parametrize('saving, code, message', [
    (False, 130, 'SIGINT again: stopping now; training since step 7 (the newest checkpoint) '
                 'is lost'),
    (True, 0, 'SIGINT: already stopping, saving first')])
def test_a_second_signal_stops_at_once_unless_saving(saving, code, message):
    program = ('import os, signal\nfrom gpt2tune.train import stop_flag\n'
               'stop = stop_flag.StopFlag()\n'
               'stop.saved = 7\n'
               'with stop.installed():\n'
               f'    stop.saving = {saving}\n'
               '    os.kill(os.getpid(), signal.SIGINT)\n'
               '    os.kill(os.getpid(), signal.SIGINT)\n'
               'print("requested", stop.requested)\n')
    result = subprocess.run([sys.executable, '-c', program], capture_output=True, text=True,
                            env=script_env(), timeout=120)
    assert result.returncode == code
    assert 'SIGINT: stopping after this step and saving' in result.stdout
    assert message in result.stdout
    assert ('requested True' in result.stdout) == saving


def test_a_signal_after_another_workers_stop_or_the_final_save_is_no_second_signal():
    program = ('import os, signal\nfrom gpt2tune.train import stop_flag\n'
               'stop = stop_flag.StopFlag()\n'
               'with stop.installed():\n'
               '    stop.requested = True  # agreed with a worker that got the signal\n'
               '    os.kill(os.getpid(), signal.SIGTERM)\n'
               '    stop.finished = True  # the final save is done\n'
               '    os.kill(os.getpid(), signal.SIGTERM)\n'
               'print("exited normally")\n')
    result = subprocess.run([sys.executable, '-c', program], capture_output=True, text=True,
                            env=script_env(), timeout=120)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        'SIGTERM: stopping after this step and saving (send it again to stop at once)',
        'SIGTERM: the run is saved, finishing', 'exited normally']
