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

import generation
import sample_files
from cli import UserError
from fixtures import ROOT, run_script, script_env

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


def test_nsamples_per_prompt_in_prompt_order(gpt2):
    texts = gpt2.generate(PROMPTS[:2], nsamples=2, length=5, include_prefix=True)
    assert [t.startswith(p) for t, p in zip(texts, [PROMPTS[0]] * 2 + [PROMPTS[1]] * 2,
                                            strict=True)] == [True] * 4


@pytest.mark.slow
def test_seeded_model_repeats_and_unseeded_calls_differ(models_dir):
    def texts(seed):
        g = generation.GPT2.load(os.path.join(models_dir, 'tiny'), seed=seed)
        try:
            return g.generate(PROMPTS[0], nsamples=2, length=8)
        finally:
            g.close()
    assert texts(5) == texts(5)
    assert texts(5) != texts(6)


def test_sliding_window_generates_past_the_context(gpt2):
    n_ctx = gpt2.hparams.n_ctx
    long = gpt2.generate(PROMPTS[0], length=n_ctx + 40, top_k=1, return_tokens=True,
                         stop_at_endoftext=False)[0]
    short = gpt2.generate(PROMPTS[0], length=20, top_k=1, return_tokens=True,
                          stop_at_endoftext=False)[0]
    assert len(long) == n_ctx + 40 and long[:20] == short


def test_stream_pieces_add_up_to_the_sample(gpt2):
    pieces = list(gpt2.stream(PROMPTS[1], length=10, top_k=1))
    assert ''.join(pieces) == gpt2.generate(PROMPTS[1], length=10, top_k=1)[0]


def test_unknown_option_and_long_prompt_are_clear_errors(gpt2):
    with pytest.raises(UserError, match='unexpected keyword'):
        gpt2.generate('x', top_z=3)
    with pytest.raises(UserError, match='more than the model\'s context of 64'):
        gpt2.generate('word ' * 100)


def readme_example():
    with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
        readme = f.read()
    return re.search(r'<!-- api example -->\n```python\n(.*?)```', readme, re.S).group(1)


def test_readme_api_example_runs(models_dir, tmp_path, monkeypatch, capsys):
    shutil.copytree(os.path.join(models_dir, 'tiny'), tmp_path / 'models' / '117M')
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), 'README.md', 'exec'), {})
    assert capsys.readouterr().out.strip()


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
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, 'src/interactive_conditional_samples.py'),
         '--models_dir', models_dir, '--model_name', 'tiny', '--prompts', '-', '--output',
         str(out), '--length', '30', '--nostop_at_endoftext'], stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=script_env(), text=True)
    proc.stdin.write('\n'.join(PROMPTS * 200) + '\n')
    proc.stdin.close()
    partial = tmp_path / 'jokes.jsonl.partial'
    deadline = time.time() + 120
    while not (partial.exists() and partial.read_text().count('\n') >= 2):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert 'interrupted' in proc.stderr.read()
    records = [json.loads(line) for line in out.read_text(encoding='utf-8').splitlines()]
    assert 2 <= len(records) < 600 and not partial.exists()


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
def test_nsamples_not_multiple_of_batch_size_is_one_clear_line(models_dir):
    result = samples_script(models_dir, '--nsamples', '3', '--batch_size', '2', stdin='',
                            check=False)
    assert result.returncode == 2
    assert 'error: --nsamples 3 is not a multiple of --batch_size 2' in result.stderr


def controlling_terminal():
    """In the child: a session of its own whose terminal is the pty on its stdin, so that
    Ctrl-C typed there is SIGINT, as in a shell."""
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
        deadline = time.time() + timeout
        while not re.search(pattern, self.seen, re.S):
            if time.time() > deadline:
                raise AssertionError(f'waited for {pattern!r}; saw {self.seen[-500:]!r}')
            if select.select([self.fd], [], [], 0.5)[0]:
                try:
                    self.seen += os.read(self.fd, 4096).decode('utf-8', 'replace')
                except OSError:
                    break
        return self.seen

    def type(self, text):
        os.write(self.fd, text.encode())

    def close(self):
        self.proc.kill()
        os.close(self.fd)


@pytest.mark.slow
def test_streaming_and_ctrl_c_in_a_terminal(models_dir):
    term = Terminal(models_dir, '--length', '100000', '--nostop_at_endoftext', '--seed', '1')
    try:
        term.read_until('Model prompt >>> $')
        term.type('Knock knock|\n')
        # Text arrives while the sample is still being written (100,000 tokens).
        first = len(term.read_until(r'SAMPLE 1 =+\r?\n.{40}'))
        assert len(term.read_until(r'SAMPLE 1 =+\r?\n.{80}')) > first
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
        term.type('\x03')
        assert term.proc.wait(timeout=60) == 0
    finally:
        term.close()


@pytest.mark.slow
def test_api_loads_a_training_run_folder(tmp_path, models_dir, corpus):
    import training
    from fixtures import train_config
    training.train(train_config(tmp_path, models_dir, corpus, steps=2, save_every=2))
    g = generation.GPT2.load(str(tmp_path / 'checkpoint' / 'run1'))
    try:
        assert g.model.checkpoint.endswith('model-2')
        assert len(g.generate('hi', length=3, return_tokens=True)[0]) <= 3
    finally:
        g.close()
