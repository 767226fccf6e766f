"""The interactive sampling script (commands/interactive_conditional_samples.py, run as
src/interactive_conditional_samples.py) on the tiny model: prompts from a file or stdin,
output files, errors before loading, and streaming and Ctrl-C in a real terminal."""

import fcntl
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import time

import pytest

import run_with_fakes
from fixtures import ROOT, run_script, script_env

PROMPTS = ['Why did the chicken cross the road?|', 'Knock knock|',
           'A man walks into a bar and orders a drink from the bartender|']


def samples_script(models_dir, *args, **kwargs):
    return run_script('src/interactive_conditional_samples.py', '--models_dir', models_dir,
                      '--model_name', 'tiny', '--length', '6', '--seed', '1', *args, **kwargs)


@pytest.mark.slow
def test_prompts_file_to_jsonl(models_dir, tmp_path):
    prompts = tmp_path / 'prompts.txt'
    prompts.write_text('\n'.join(PROMPTS) + '\n\n', encoding='utf-8')
    out = tmp_path / 'jokes.jsonl'
    samples_script(models_dir, '--prompts', str(prompts), '--nsamples', '2',
                   '--batch_size', '2', '--output', str(out), '--include_prefix')
    records = [json.loads(line) for line in out.read_text(encoding='utf-8').splitlines()]
    assert [r['prompt'] for r in records] == [p for p in PROMPTS for _ in range(2)]
    assert all(r['sample'].startswith(r['prompt']) and 0 < r['tokens'] <= 6 for r in records)
    assert not (tmp_path / 'jokes.jsonl.partial').exists()


@pytest.mark.slow
def test_prompts_share_batches_whatever_nsamples_and_batch_size(models_dir, tmp_path):
    out = tmp_path / 'jokes.jsonl'
    for flags, prompts in [((), PROMPTS), (('--nsamples', '3'), PROMPTS[:2])]:
        samples_script(models_dir, '--prompts', '-', '--batch_size', '4', '--output',
                       str(out), *flags, stdin='\n'.join(prompts) + '\n')
        records = [json.loads(line) for line in out.read_text(encoding='utf-8').splitlines()]
        nsamples = 3 if flags else 1
        assert [r['prompt'] for r in records] == [p for p in prompts for _ in range(nsamples)]


@pytest.mark.slow
def test_prompts_from_stdin_jsonl_and_text_output(models_dir, tmp_path):
    jsonl = tmp_path / 'prompts.jsonl'
    jsonl.write_text(''.join(json.dumps({'prompt': p, 'id': i}) + '\n'
                             for i, p in enumerate(PROMPTS[:2])), encoding='utf-8')
    out = tmp_path / 'jokes.txt'
    samples_script(models_dir, '--prompts', str(jsonl), '--output', str(out))
    text = out.read_text(encoding='utf-8')
    assert text.count(' SAMPLE 1 ') == 2 and text.count('=' * 80) == 2
    piped = samples_script(models_dir, '--prompts', '-', stdin='\n'.join(PROMPTS) + '\n')
    assert piped.stdout.count(' SAMPLE 1 ') == 3
    # The device line goes to stderr: stdout holds the samples alone, for a pipe.
    assert 'device:' not in piped.stdout and '\ndevice: ' in '\n' + piped.stderr


@pytest.mark.slow
def test_stop_text_ends_every_sample(models_dir, tmp_path):
    out = tmp_path / 'jokes.jsonl'
    samples_script(models_dir, '--prompts', '-', '--output', str(out), '--length', '30',
                   '--nsamples', '4', '--batch_size', '4', '--stop', 'e', '--stop', '\\n',
                   stdin=PROMPTS[0] + '\n')
    samples = [json.loads(line)['sample'] for line in out.read_text().splitlines()]
    assert len(samples) == 4 and not any('e' in s or '\n' in s for s in samples)


@pytest.mark.slow
def test_a_prompt_too_long_is_one_error_line_and_no_output(models_dir, tmp_path):
    (tmp_path / 'p.txt').write_text('hi\n' + 'word ' * 100 + '\n', encoding='utf-8')
    result = samples_script(models_dir, '--prompts', str(tmp_path / 'p.txt'), '--output',
                            str(tmp_path / 'out.jsonl'), check=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    assert result.returncode == 2 and len(errors) == 1, result.stderr
    assert re.search(r'p\.txt:2: \d+ tokens, more than the model.s context of 64', errors[0])
    assert 'Loading checkpoint' not in result.stderr  # refused before the weights load
    assert not [n for n in os.listdir(tmp_path) if n.startswith('out')]


@pytest.mark.slow
def test_ctrl_c_while_running_prompts_keeps_the_finished_samples(models_dir, tmp_path):
    out = tmp_path / 'jokes.jsonl'
    # The fake holds the third batch (one sample each) until Ctrl-C.
    proc = subprocess.Popen(
        run_with_fakes.command('hold_after_batches=2', 'src/interactive_conditional_samples.py',
                               '--models_dir', models_dir, '--model_name', 'tiny', '--prompts',
                               '-', '--output', str(out), '--length', '30',
                               '--nostop_at_endoftext'),
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=script_env(), text=True, preexec_fn=default_sigint)
    try:
        proc.stdin.write('\n'.join(PROMPTS) + '\n')
        proc.stdin.close()
        for line in proc.stderr:
            if line.startswith('fake: holding before batch 3'):
                break
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130  # only a hang takes this long
    finally:
        proc.kill()
    assert 'interrupted' in proc.stderr.read()
    records = [json.loads(line) for line in out.read_text(encoding='utf-8').splitlines()]
    assert [(r['prompt'], r['tokens']) for r in records] == [(p, 30) for p in PROMPTS[:2]]
    assert not (tmp_path / 'jokes.jsonl.partial').exists()


@pytest.mark.slow
def test_unwritable_output_is_refused_before_loading(models_dir, tmp_path):
    result = samples_script(models_dir, '--prompts', '-', '--output',
                            str(tmp_path / 'missing' / 'out.jsonl'), stdin='hi\n', check=False)
    assert result.returncode == 2
    assert 'no such directory' in result.stderr and 'Loading checkpoint' not in result.stderr


@pytest.mark.slow
def test_interactive_script_through_stdin(models_dir):
    result = samples_script(models_dir, '--nsamples', '2', '--top_k', '40',
                            '--temperature', '0.7',
                            stdin='\nWhy did the chicken cross the road?|\n')
    out = result.stdout
    assert out.startswith('Model prompt >>> Prompt should not be empty!\nModel prompt >>> ' +
                          '=' * 40 + ' SAMPLE 1 ' + '=' * 40)
    assert ' SAMPLE 2 ' in out and '=' * 80 in out
    assert out.rstrip().endswith('Model prompt >>>')


@pytest.mark.slow
def test_the_interactive_script_prints_the_same_samples_at_batch_size_1_and_4(models_dir):
    """Batch 1 streams each sample as it comes, batch 4 prints them at the end."""
    def printed(batch_size):
        return samples_script(models_dir, '--nsamples', '4', '--batch_size', str(batch_size),
                              '--seed', '3', '--top_k', '40', '--length', '20',
                              '--precision', 'bfloat16', stdin='Knock knock|\n').stdout
    assert printed(1) == printed(4)
    assert printed(1).count(' SAMPLE ') == 4


@pytest.mark.slow
def test_nsamples_not_multiple_of_batch_size_is_one_clear_line(models_dir):
    result = samples_script(models_dir, '--nsamples', '3', '--batch_size', '2', stdin='',
                            check=False)
    assert result.returncode == 2
    assert 'error: --nsamples 3 is not a multiple of --batch_size 2' in result.stderr


def default_sigint():
    """In the child: SIGINT as a shell leaves it for a command it runs. A test run in the
    background (`make test &`, some CI runners) inherits SIGINT ignored, and Python then
    raises no KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def controlling_terminal():
    """In the child: a session of its own whose terminal is the pty on its stdin, so that
    Ctrl-C typed there is SIGINT, as in a shell."""
    default_sigint()
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """The interactive script on a pseudo-terminal, typed at as a person would."""

    def __init__(self, models_dir, *args):
        self.fd, child = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, 'src/interactive_conditional_samples.py'),
             '--models_dir', models_dir, '--model_name', 'tiny', *args],
            stdin=child, stdout=child, stderr=child, env=script_env(),
            preexec_fn=controlling_terminal)
        os.close(child)
        self.seen = ''

    def read_until(self, pattern, timeout=60):
        """Everything seen so far, once it matches `pattern`; the timeout only catches a
        hang."""
        return self.wait_for(lambda seen: re.search(pattern, seen, re.S), repr(pattern),
                             timeout)

    def read_more(self, timeout=60):
        """Everything seen so far, once more has arrived than had before the call."""
        before = len(self.seen)
        return self.wait_for(lambda seen: len(seen) > before, 'more output', timeout)

    def wait_for(self, done, what, timeout):
        deadline = time.time() + timeout
        while not done(self.seen):
            if time.time() > deadline:
                raise AssertionError(f'waited for {what}; saw {self.seen[-500:]!r}')
            if select.select([self.fd], [], [], 0.5)[0]:
                try:
                    self.seen += os.read(self.fd, 4096).decode('utf-8', 'replace')
                except OSError:
                    break
        return self.seen

    def wait_reading(self, timeout=60):
        """Until the program sleeps in a system call on file descriptor 0, its read of the
        terminal (Linux's /proc/PID/syscall: number, then arguments). A Ctrl-C that comes
        between the prompt and that read is held by CPython's input() until the next key."""
        deadline = time.time() + timeout
        while not self._reading():
            if time.time() > deadline:
                raise AssertionError('the program never read the terminal')
            time.sleep(0.01)

    def _reading(self):
        with open(f'/proc/{self.proc.pid}/syscall', encoding='ascii') as f:
            fields = f.read().split()
        return len(fields) > 1 and fields[0] != 'running' and fields[1] == '0x0'

    def type(self, text):
        os.write(self.fd, text.encode())

    def close(self):
        self.proc.kill()
        os.close(self.fd)


@pytest.mark.slow
def test_streaming_and_ctrl_c_in_a_terminal(models_dir):
    # A sample of 10**9 tokens: still being written when Ctrl-C comes, on any machine.
    term = Terminal(models_dir, '--length', str(10 ** 9), '--nostop_at_endoftext', '--seed',
                    '1')
    try:
        term.read_until('Model prompt >>> $')
        term.type('Knock knock|\n')
        # Sample text arrives, then more of it: the text shows while it is being written.
        term.read_until(r'SAMPLE 1 =+\r?\n.')
        term.read_more()
        term.type('\x03')  # Ctrl-C stops this sample, not the program
        term.read_until(r'\[sample stopped\].*Model prompt >>> $')
        term.type('\x04')  # Ctrl-D at the prompt quits
        assert term.proc.wait(timeout=60) == 0
    finally:
        term.close()


@pytest.mark.slow
def test_ctrl_c_at_the_prompt_exits_0(models_dir):
    term = Terminal(models_dir)
    try:
        term.read_until('Model prompt >>> $')
        term.wait_reading()
        term.type('\x03')
        assert term.proc.wait(timeout=60) == 0
    finally:
        term.close()
