"""Text from the tiny model: the Python API, the sampling scripts' prompts and output
files, streaming and Ctrl-C in a real terminal."""

import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import termios
import time

import pytest

import run_with_fakes
from fixtures import ROOT, run_script, script_env
from gpt2tune import cli
from gpt2tune.errors import UserError
from gpt2tune.generate import generation, sample_files

PROMPTS = ['Why did the chicken cross the road?|', 'Knock knock|',
           'A man walks into a bar and orders a drink from the bartender|']


@pytest.fixture(scope='module')
def gpt2(models_dir):
    g = generation.GPT2.load(os.path.join(models_dir, 'tiny'), batch_size=3, seed=1)
    yield g
    g.close()


def test_different_prompts_in_one_batch_equal_each_prompt_alone(models_dir, gpt2):
    together = gpt2.generate(PROMPTS, length=12, top_k=1, return_tokens=True)
    alone = generation.GPT2.load(os.path.join(models_dir, 'tiny'), batch_size=1, seed=1)
    try:
        assert together == [alone.generate(p, length=12, top_k=1, return_tokens=True)[0]
                            for p in PROMPTS]
    finally:
        alone.close()
    assert all(len(t) == 12 for t in together)  # random weights rarely pick <|endoftext|>


@pytest.mark.parametrize('precision', ['float32', 'bfloat16'])
def test_the_same_seed_gives_the_same_samples_at_any_batch_size(models_dir, precision):
    """Three prompts, three samples each, past the context (the window slides), in two
    calls: the same tokens whether rows decode one, three or eight at a time."""
    samples = {}
    for batch_size in (1, 3, 8):
        g = generation.GPT2.load(os.path.join(models_dir, 'tiny'), batch_size=batch_size,
                                 seed=7, precision=precision)
        try:
            samples[batch_size] = [g.generate(PROMPTS, nsamples=3, length=70, top_k=40,
                                              return_tokens=True, stop_at_endoftext=False)
                                   for _ in range(2)]
        finally:
            g.close()
    assert samples[1] == samples[3] == samples[8]
    assert samples[1][0] != samples[1][1]  # the second call's rows are new ones


def test_streams_of_a_seeded_model_are_its_rows_in_turn(models_dir):
    """Two streams of one seeded model give the two samples one generate call gives."""
    path = os.path.join(models_dir, 'tiny')
    streamed = generation.GPT2.load(path, seed=4)
    together = generation.GPT2.load(path, seed=4, batch_size=2)
    try:
        texts = [''.join(streamed.stream(PROMPTS[1], length=15, top_k=40)) for _ in range(2)]
        assert texts == together.generate(PROMPTS[1], nsamples=2, length=15, top_k=40)
        assert texts[0] != texts[1]
    finally:
        streamed.close()
        together.close()


def test_nsamples_per_prompt_in_prompt_order(gpt2):
    texts = gpt2.generate(PROMPTS[:2], nsamples=2, length=5, include_prefix=True)
    assert [t.startswith(p) for t, p in zip(texts, [PROMPTS[0]] * 2 + [PROMPTS[1]] * 2,
                                            strict=True)] == [True] * 4


@pytest.mark.slow
def test_seeded_model_repeats_and_unseeded_calls_differ(models_dir):
    def texts(seed):
        g = generation.GPT2.load(os.path.join(models_dir, 'tiny'), seed=seed)
        try:
            return g.generate(PROMPTS[0], nsamples=2, length=8, return_tokens=True)
        finally:
            g.close()
    assert texts(5) == texts(5)
    assert texts(5) != texts(6)
    # Unseeded models draw from fresh entropy: 16 tokens sampled alike twice would take
    # a model far more certain than this random one.
    assert texts(None) != texts(None)


def test_sliding_window_generates_past_the_context(gpt2):
    n_ctx = gpt2.hparams.n_ctx
    long = gpt2.generate(PROMPTS[0], length=n_ctx + 40, top_k=1, return_tokens=True,
                         stop_at_endoftext=False)[0]
    short = gpt2.generate(PROMPTS[0], length=20, top_k=1, return_tokens=True,
                          stop_at_endoftext=False)[0]
    assert len(long) == n_ctx + 40 and long[:20] == short


@pytest.mark.parametrize('stop', [(), ('a stop text no sample reaches',)])
def test_stream_pieces_add_up_to_the_sample(gpt2, stop):
    """Also when the sample runs its full length: the stream holds back the end of the
    text that could begin a stop text, or a cut UTF-8 character, until the end."""
    pieces = list(gpt2.stream(PROMPTS[1], length=10, top_k=1, stop=stop))
    assert ''.join(pieces) == gpt2.generate(PROMPTS[1], length=10, top_k=1, stop=stop)[0]


def test_min_p_one_keeps_only_the_top_token_as_top_k_one_does(gpt2):
    greedy = gpt2.generate(PROMPTS[1], length=10, top_k=1, return_tokens=True)
    assert gpt2.generate(PROMPTS[1], length=10, min_p=1.0, return_tokens=True) == greedy


def test_unknown_option_and_long_prompt_are_clear_errors(gpt2):
    with pytest.raises(UserError, match='unexpected keyword'):
        gpt2.generate('x', top_z=3)
    with pytest.raises(UserError, match='more than the model\'s context of 64'):
        gpt2.generate('word ' * 100)


USER_PROGRAM = """
import logging, sys
logging.basicConfig(level=logging.INFO, format='%(name)s: %(message)s')
logging.getLogger('mine').info('before')
from gpt2tune.generate.generation import GPT2
gpt2 = GPT2.load(sys.argv[1], seed=1)
print(len(gpt2.generate('Hi|', length=3)))
logging.getLogger('mine').info('after')
gpt2.close()
"""


@pytest.mark.slow
def test_the_api_is_quiet_in_a_users_program_and_leaves_its_logging_alone(models_dir):
    # As in a user's shell (this process's quiet start set both when it imported generation).
    env = {k: v for k, v in script_env().items()
           if k not in ('TF_CPP_MIN_LOG_LEVEL', cli.QUIET_MARK)}
    result = subprocess.run([sys.executable, '-c', USER_PROGRAM,
                             os.path.join(models_dir, 'tiny')],
                            capture_output=True, text=True, env=env, timeout=300)
    assert (result.returncode, result.stdout) == (0, '1\n'), result.stderr[-2000:]
    assert result.stderr == 'mine: before\nmine: after\n'


def readme_example():
    with open(os.path.join(ROOT, 'docs', 'generating.md'), encoding='utf-8') as f:
        readme = f.read()
    return re.search(r'<!-- api example -->\n```python\n(.*?)```', readme, re.S).group(1)


def test_the_docs_api_example_runs(models_dir, tmp_path, monkeypatch, capsys):
    shutil.copytree(os.path.join(models_dir, 'tiny'), tmp_path / 'models' / '117M')
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), 'docs/generating.md', 'exec'), {})
    printed = capsys.readouterr().out
    # The same calls on the same seed: six jokes cut at their first newline, one a line,
    # then the streamed text.
    g = generation.GPT2.load('models/117M', seed=1)
    try:
        jokes = g.generate(['Why did the chicken cross the road?|', 'Knock knock|'],
                           nsamples=3, length=40, top_k=40, temperature=0.7, stop=['\n'])
        g.generate('A man walks into a bar|', length=20, return_tokens=True)
        streamed = ''.join(g.stream('My dog|', length=30))
    finally:
        g.close()
    assert len(jokes) == 6 and not any('\n' in joke for joke in jokes)
    assert printed == ''.join(joke + '\n' for joke in jokes) + streamed


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


@pytest.mark.parametrize('content, name, message', [
    ('', 'p.txt', 'p.txt: holds no prompts'),
    ('{"prompt": "a"}\n{"text": "b"}\n', 'p.jsonl', 'p.jsonl:2: expected an object'),
    ('{"prompt": "a"}\nnot json\n', 'p.jsonl', 'p.jsonl:2: not valid JSON'),
])
def test_bad_prompts_file_names_file_and_line(tmp_path, content, name, message):
    (tmp_path / name).write_text(content, encoding='utf-8')
    with pytest.raises(UserError, match=message):
        sample_files.read_prompts(str(tmp_path / name))


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
def test_unconditional_samples_to_a_file(models_dir, tmp_path):
    out = tmp_path / 'samples.txt'
    run_script('src/generate_unconditional_samples.py', '--models_dir', models_dir,
               '--model_name', 'tiny', '--nsamples', '4', '--batch_size', '2',
               '--length', '5', '--output_file', str(out), '--seed', '1')
    text = out.read_text(encoding='utf-8')
    assert [f' SAMPLE {i} ' in text for i in range(1, 6)] == [True] * 4 + [False]


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


@pytest.mark.slow
def test_api_loads_a_training_run_folder(tmp_path, models_dir, corpus):
    from fixtures import train_config
    from gpt2tune.train import training
    training.train(train_config(tmp_path, models_dir, corpus, steps=2, save_every=2))
    g = generation.GPT2.load(str(tmp_path / 'checkpoint' / 'run1'))
    try:
        assert g.model.checkpoint.endswith('model-2')
        assert len(g.generate('hi', length=3, return_tokens=True,
                              stop_at_endoftext=False)[0]) == 3
    finally:
        g.close()
