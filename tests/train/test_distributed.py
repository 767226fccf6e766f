"""Two workers on 127.0.0.1, as TF_CONFIG describes them, against one process."""

import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest

import run_with_fakes
from fixtures import logged_losses, script_env, variables_of
from workers import command, finish, start_workers

pytestmark = pytest.mark.slow  # every test here trains or starts processes


def test_two_workers_equal_one_process_with_twice_the_batch(tmp_path, models_dir, corpus):
    env = script_env()
    subprocess.run(command(models_dir, corpus, tmp_path / 'one', 4, '--steps', '4',
                           '--accumulate_gradients', '2'),
                   env=env, check=True, capture_output=True)
    outs = finish(start_workers(command(models_dir, corpus, tmp_path / 'two', 2, '--steps',
                                        '4', '--accumulate_gradients', '2')))
    one = logged_losses(str(tmp_path / 'one' / 'run1'))
    two = logged_losses(str(tmp_path / 'two' / 'run1'))
    assert sorted(two) == [1, 2, 3, 4]
    for step in one:
        assert two[step][0] == pytest.approx(one[step][0], abs=1e-5)
    a = variables_of(str(tmp_path / 'one' / 'run1' / 'model-4'))
    b = variables_of(str(tmp_path / 'two' / 'run1' / 'model-4'))
    # Sums in another order differ in the last bits, and Adam's division by the root of
    # its second moment magnifies that where a gradient is near zero; a wrong batch moves
    # weights by the learning rate (3e-3) a step.
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-4, err_msg=name)
    # Both workers trained; only the chief wrote files.
    assert '[4 | ' in outs[0] and '[4 | ' in outs[1] and 'Saving' not in outs[1]
    assert len([n for n in os.listdir(tmp_path / 'two' / 'run1') if 'events' in n]) == 1


def test_a_dead_worker_stops_the_other_with_a_clear_message(tmp_path, models_dir, corpus):
    procs = start_workers(command(models_dir, corpus, tmp_path, 2), timeout=10)
    for line in procs[1].stdout:
        if line.startswith('[2 |'):
            break
    procs[1].kill()
    try:
        _, err = procs[0].communicate(timeout=120)  # only a hang takes this long
    finally:
        procs[0].kill()
    assert procs[0].returncode == 2
    assert 'another worker stopped or cannot be reached' in err
    assert 'restart every worker to resume' in err


def test_two_workers_resume_from_the_chiefs_checkpoint(tmp_path, models_dir, corpus):
    flags = ['--save_every', '2']
    finish(start_workers(command(models_dir, corpus, tmp_path, 2, '--steps', '2', *flags)))
    outs = finish(start_workers(command(models_dir, corpus, tmp_path, 2, '--steps', '4',
                                        *flags)))
    for out in outs:
        assert f'Loading checkpoint {tmp_path}/run1/model-2' in out
        assert '\n[3 | ' in out
    assert (tmp_path / 'run1' / 'counter').read_text() == '4\n'


@pytest.mark.parametrize('first', [1, 0], ids=['worker_first', 'chief_first'])
def test_a_signal_to_every_worker_stops_all_at_one_step_and_the_chief_saves(
        first, tmp_path, models_dir, corpus):
    procs = start_workers(command(models_dir, corpus, tmp_path, 2))
    for line in procs[0].stdout:
        if line.startswith('[3 |'):
            break
    procs[first].send_signal(signal.SIGTERM)  # not at the same moment: a step apart, perhaps
    time.sleep(0.5)
    procs[1 - first].send_signal(signal.SIGTERM)
    outs = finish(procs)
    steps = [int(re.findall(r'^\[(\d+) \|', out, re.M)[-1]) for out in outs]
    saved = int((tmp_path / 'run1' / 'counter').read_text())
    assert steps == [saved, saved] and all('interrupted' in out for out in outs)
    assert (tmp_path / 'run1' / f'model-{saved}.index').exists()


def test_the_chiefs_own_work_does_not_count_against_the_timeout(tmp_path, models_dir, corpus):
    """The chief's sample writing at step 2 takes longer than --collective_timeout (a
    delay the fake injects); the other worker waits for it instead of giving up."""
    timeout = 10  # also bounds how far apart the workers may reach a step
    flags = ['--steps', '4', '--sample_every', '2']
    cmd = command(models_dir, corpus, tmp_path, 2, *flags)
    outs = finish(start_workers(
        run_with_fakes.command(f'chief_work_delay={timeout + 5}', 'train.py', *cmd[2:]),
        timeout=timeout))
    assert f'fake: chief work delayed {timeout + 5} s' in outs[0]
    for out in outs:
        assert re.findall(r'^\[(\d+) \|', out, re.M) == ['1', '2', '3', '4']
    assert sorted(os.listdir(tmp_path / 'samples' / 'run1')) == ['samples-2', 'samples-4']


def test_a_worker_that_starts_later_than_the_timeout_is_waited_for(tmp_path, models_dir,
                                                                      corpus):
    """Start-up is not a step: the chief waits for a worker whose start the fake delays
    beyond --collective_timeout, as a slow disk or machine would."""
    timeout = 10
    cmd = command(models_dir, corpus, tmp_path, 2, '--steps', '2')
    outs = finish(start_workers(
        run_with_fakes.command(f'late_start={timeout + 5}', 'train.py', *cmd[2:]),
        timeout=timeout))
    assert f'fake: start delayed {timeout + 5} s' in outs[1]
    for out in outs:
        assert re.findall(r'^\[(\d+) \|', out, re.M) == ['1', '2']
