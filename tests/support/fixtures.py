"""What tests share: data built on the fly (a small byte-level BPE vocabulary, joke
files, random models), the tiny model's training config, its logits in the graph, and the
project's scripts (the server too) run as a user would. Fixtures that use these are in
tests/conftest.py."""

import collections
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import regex

from gpt2tune.data.encoder import PAT_STR, bytes_to_unicode

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SAMPLE_TEXT = """Why did the chicken cross the road? To get to the other side!
I told my wife she was drawing her eyebrows too high. She looked surprised.
What do you call a fish with no eyes? A fsh. It's the 3rd joke, isn't it? Don't.
Café naïve résumé, 日本語のテキスト, emoji 😀👍🏽 and 👨‍👩‍👧 families.
""" * 3


def write_vocabulary(directory, text, n_merges):
    """encoder.json + vocab.bpe in GPT-2's format, with merges learnt from `text`."""
    byte_encoder = bytes_to_unicode()
    words = collections.Counter(
        tuple(byte_encoder[b] for b in piece.encode('utf-8'))
        for piece in regex.findall(PAT_STR, text))
    encoder = {c: i for i, c in enumerate(byte_encoder.values())}
    merges = []
    while len(merges) < n_merges:
        pairs = collections.Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:], strict=False):
                pairs[pair] += count
        # A token made twice by different merges would break GPT-2's one-merge-one-token
        # layout, which released vocabularies follow: skip such pairs.
        candidates = [p for p in pairs if p[0] + p[1] not in encoder]
        if not candidates:
            break
        best = max(candidates, key=lambda p: (pairs[p], p))
        merges.append(best)
        encoder[best[0] + best[1]] = len(encoder)
        words = collections.Counter({_merge(w, best): c for w, c in words.items()})
    encoder['<|endoftext|>'] = len(encoder)
    (directory / 'encoder.json').write_text(json.dumps(encoder), encoding='utf-8')
    (directory / 'vocab.bpe').write_text(
        '#version: 0.2\n' + ''.join(f'{a} {b}\n' for a, b in merges), encoding='utf-8')


def random_arrays(hparams, seed):
    """Release-named weights for `hparams` in which every parameter matters: random biases,
    layer-norm gains around 1 and layer-norm biases, which GPT-2's initialisation leaves
    at 0, 1 and 0, so that a test comparing logits sees a bias or layer-norm mistake.
    Matrices of the blocks have a standard deviation near 1/sqrt(n_embd): with GPT-2's
    0.02 the blocks add little to the token's own embedding and a greedy continuation
    repeats one token."""
    from gpt2tune.model.hparams import variable_shapes
    rs = np.random.RandomState(seed)
    stdev = {'model/wte': 0.02, 'model/wpe': 0.1, 'w': 0.2, 'b': 0.1, 'g': 0.2}
    arrays = {}
    for name, shape in variable_shapes(hparams).items():
        kind = name if name in stdev else name.rsplit('/', 1)[1]
        noise = rs.normal(0, stdev[kind], shape)
        arrays[name] = (1 + noise if kind == 'g' else noise).astype(np.float32)
    return arrays


def write_random_model(directory, hparams, vocab_dir, seed):
    """A model directory in the release layout with random_arrays(hparams, seed)."""
    from gpt2tune.model.model_dir import save_arrays
    save_arrays(str(directory), random_arrays(hparams, seed), hparams, vocab_dir)


def _merge(word, pair):
    out, i = [], 0
    while i < len(word):
        if word[i:i + 2] == pair:
            out.append(pair[0] + pair[1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def write_stupidstuff(path, n=60):
    jokes = [{'body': f'Joke number {i}: why did the chicken cross road {i}? To get away.',
              'category': 'Animal', 'id': i, 'rating': 1 + i % 5} for i in range(n)]
    path.write_text(json.dumps(jokes), encoding='utf-8')


def train_config(tmp_path, models_dir, corpus, **overrides):
    """A TrainConfig for the tiny model, writing under tmp_path."""
    from gpt2tune.train.train_config import TrainConfig
    values = dict(dataset=corpus, model_name='tiny', models_dir=models_dir, batch_size=2,
                  learning_rate=3e-3, steps=4, save_every=1000, sample_every=1000,
                  sample_length=8, seed=1, precision='float32',
                  checkpoint_dir=str(tmp_path / 'checkpoint'),
                  sample_dir=str(tmp_path / 'samples'))
    values.update(overrides)
    return TrainConfig(**values)


def variables_of(ckpt, dtype=None):
    """A checkpoint's variables, name -> array (in `dtype`, when given)."""
    import tensorflow as tf
    reader = tf.train.load_checkpoint(ckpt)
    return {name: reader.get_tensor(name) if dtype is None else
            reader.get_tensor(name).astype(dtype) for name, _ in tf.train.list_variables(ckpt)}


def run_dir(tmp_path):
    """The run folder train_config(tmp_path, ...) trains into."""
    return tmp_path / 'checkpoint' / 'run1'


# A LoRA run's settings (the `trained` fixture of conftest.py trains one).
LORA = dict(lora_rank=4, lora_targets='attn,mlp/c_fc', also_train='ln_f', seed=3)


def tokens_for(hparams):
    return np.random.RandomState(0).randint(0, hparams.n_vocab, size=[2, 12])


def graph_logits(hparams, ckpt, tokens, adapters=None, factors=None):
    """model.model's logits with `ckpt` restored (merged, if it holds adapters); with
    `adapters`, the graph has adapter variables, initialised (B zero) or fed `factors`."""
    import tensorflow as tf

    from gpt2tune.model import model, model_dir
    tf1 = tf.compat.v1
    with tf1.Session(graph=tf.Graph()) as sess:
        X = tf1.placeholder(tf.int32, [None, None])
        logits = model.model(hparams, X, lora=adapters)['logits']
        sess.run([v.initializer for v in model_dir.adapter_variables()])
        for v in model_dir.adapter_variables():
            if factors:
                v.load(factors[v.op.name], sess)
        model_dir.restore(sess, ckpt)
        return sess.run(logits, {X: tokens})


BLUE, ORANGE = (0x1f, 0x77, 0xb4), (0xff, 0x7f, 0x0e)  # matplotlib's first two colours


def pixels_of(image, colour):
    """How many pixels of `image` (RGB) are near `colour`: a loss picture's curve."""
    return int(np.all(np.abs(image.astype(int) - colour) < 30, axis=-1).sum())


def run_script(script, *args, stdin=None, env=None, fakes=(), cwd=ROOT, check=True):
    """Run one of the project's scripts (a path from the repository root, or a command's
    module: gpt2tune.commands.serve) as a user would, with PYTHONPATH=src; with `fakes`,
    through tests/support/run_with_fakes.py."""
    import run_with_fakes
    full_env = script_env(**(env or {}))
    command = (run_with_fakes.command(list(fakes), script, *args) if fakes else
               [sys.executable, os.path.join(ROOT, script), *args] if script.endswith('.py')
               else [sys.executable, '-m', script, *args])
    result = subprocess.run(command, input=stdin, capture_output=True, text=True,
                            env=full_env, cwd=cwd, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f'{script} {args} exited {result.returncode}:\n'
                             f'{result.stderr[-3000:]}')
    return result


def script_env(**extra):
    return dict(os.environ, PYTHONPATH=os.path.join(ROOT, 'src'), **extra)


# The server as a user runs it (tests/serve/test_serve_app.py, tests/commands/test_serve.py;
# the `server` and `slow_server` fixtures are in tests/conftest.py).
SERVE = 'gpt2tune.commands.serve'
KEY = 'test-key'
PROMPTS = ['Why did the chicken cross the road?|', 'Knock knock|', 'A man walks into a bar|',
           'What do you call a fish with no eyes?|', 'I told my wife|', 'Doctor, doctor|',
           'My dog|', 'Two cows in a field|']


class Server:
    """serve.py with the tiny model, ready (its `Serving` line read)."""

    def __init__(self, models_dir, *flags, fakes=(), **env):
        import run_with_fakes
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            self.port = s.getsockname()[1]
        self.url = f'http://127.0.0.1:{self.port}'
        args = ['--models_dir', models_dir, '--model_name', 'tiny', '--port', str(self.port),
                *flags]
        command = (run_with_fakes.command(list(fakes), SERVE, *args) if fakes else
                   [sys.executable, '-m', SERVE, *args])
        self.proc = subprocess.Popen(command, env=script_env(**env), stderr=subprocess.PIPE,
                                     text=True)
        self.wait_for_line('Serving tiny on')

    def wait_for_line(self, start, timeout=180):
        """Read stderr up to a line starting with `start`; the lines before it in
        self.lines. A server that has not said it within `timeout` seconds is ended: a hang
        fails the test."""
        self.lines = []
        watchdog = threading.Timer(timeout, self.proc.kill)
        watchdog.start()
        try:
            for line in self.proc.stderr:
                if line.startswith(start):
                    return
                self.lines.append(line)
        finally:
            watchdog.cancel()
        raise AssertionError(f'serve.py exited {self.proc.wait()} before "{start}" '
                             f'(killed after {timeout} s if negative)')

    def client(self, key=KEY):
        import openai
        return openai.OpenAI(base_url=f'{self.url}/v1', api_key=key, max_retries=0,
                             timeout=60)  # a hang fails the test

    def request(self, path, body=None, key=KEY, method=None, headers=None):
        """(status, JSON answer) of a GET, or of a POST of `body` (bytes or an object);
        with headers=dict, (status, answer, the answer's headers)."""
        data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
        sent = {'Content-Type': 'application/json', **(headers or {})}
        if key:
            sent['Authorization'] = f'Bearer {key}'
        request = urllib.request.Request(self.url + path, data, sent, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                text, status, got = answer.read().decode(), answer.status, answer.headers
        except urllib.error.HTTPError as e:
            text, status, got = e.read().decode(), e.code, e.headers
        answer = json.loads(text) if text.startswith(('{', '[')) else text
        return (status, answer, got) if headers is not None else (status, answer)

    def metric(self, name):
        text = self.request('/metrics')[1]
        return float(re.search(rf'^{name} (\S+)$', text, re.M).group(1))

    def wait_for_metric(self, name, value):
        deadline = time.monotonic() + 60  # a hang fails; the test never waits on time
        while self.metric(name) != value:
            assert time.monotonic() < deadline, f'{name} never reached {value}'

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stderr.close()


def train_command(models_dir, corpus, *flags, checkpoint_dir=None, model_name='tiny'):
    """train.py as a user types it, with the tiny model's settings of train_config; later
    flags override earlier ones."""
    command = [sys.executable, os.path.join(ROOT, 'train.py'), '--dataset', corpus,
               '--models_dir', models_dir, '--model_name', model_name, '--batch_size', '2',
               '--learning_rate', '0.003', '--sample_every', '1000', '--sample_length', '8',
               '--seed', '1', '--precision', 'float32']
    if checkpoint_dir:
        command += ['--checkpoint_dir', str(checkpoint_dir),
                    '--sample_dir', os.path.join(str(checkpoint_dir), 'samples')]
    return command + list(flags)


MIXED_TEXTS = [
    'Hello world',
    "Why did the chicken cross the road?|To get to the other side!<|endoftext|>",
    'Café naïve résumé — “quotes” and ‘single’ ones',
    '日本語のテキストと中文文本，한국어 텍스트',
    'emoji 😀👍🏽 family 👨‍👩‍👧‍👦 flags 🇺🇸🇫🇷',
    'combining: e\u0301 a\u0308 n\u0303 and Z̷̢͎a̸l̵g̶o̷',
    'runs   of    spaces\t\ttabs\n\n\nnewlines \n \n  \t mixed   ',
    "I'm you're he's they'll we've I'd can't WON'T I'M YOU'RE HE'S THEY'LL WE'VE",
    'digits 123 4567 3.14159 1,000,000 0x1F 2nd 3rd',
    'sep<|endoftext|>word<|endoftext|> <|endoftext|>\n<|endoftext|>x<|endoftext|>',
    '<|endoftext|><|endoftext|>a <|endoftext|>b',
    '   leading spaces and trailing   ',
    'symbols !@#$%^&*()_+-=[]{};\':",./<>?`~ \\ |',
    '\u00a0non-breaking\u2003em space\u200bzero width',
]


def reference_tokenizer(vocab_dir, special=True):
    """Hugging Face's byte-level BPE (independent code) on the same vocabulary; with
    `special` it treats <|endoftext|> as GPT-2's special token, as ours does, else as text
    (as the 2019 encoder did)."""
    import tokenizers
    with open(f'{vocab_dir}/encoder.json', encoding='utf-8') as f:
        vocab = json.load(f)
    with open(f'{vocab_dir}/vocab.bpe', encoding='utf-8') as f:
        merges = [tuple(line.split(' ')) for line in f.read().split('\n')[1:] if line]
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab, merges))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    if special:
        tok.add_special_tokens(['<|endoftext|>'])
    return tok


def numpy_gpt2(weights, hparams, tokens):
    """GPT-2's forward pass written independently in NumPy: logits [sequence, n_vocab]."""
    def layer_norm(x, prefix):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-5) * weights[f'{prefix}/g'] + weights[f'{prefix}/b']

    def dense(x, prefix):
        return x @ weights[f'{prefix}/w'][0] + weights[f'{prefix}/b']

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))

    n, heads = len(tokens), hparams.n_head
    x = weights['model/wte'][tokens] + weights['model/wpe'][:n]
    causal = np.tril(np.ones([n, n], bool))
    for i in range(hparams.n_layer):
        p = f'model/h{i}'
        q, k, v = np.split(dense(layer_norm(x, f'{p}/ln_1'), f'{p}/attn/c_attn'), 3, axis=-1)
        q, k, v = (t.reshape(n, heads, -1).transpose(1, 0, 2) for t in (q, k, v))
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
        scores = np.where(causal, scores, -np.inf)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        a = (probs @ v).transpose(1, 0, 2).reshape(n, -1)
        x = x + dense(a, f'{p}/attn/c_proj')
        h = gelu(dense(layer_norm(x, f'{p}/ln_2'), f'{p}/mlp/c_fc'))
        x = x + dense(h, f'{p}/mlp/c_proj')
    return layer_norm(x, 'model/ln_f') @ weights['model/wte'].T


def logged_losses(run_dir):
    """step -> every loss TensorBoard got for it (a step redone after a kill logs twice)."""
    import glob

    import tensorflow as tf
    losses = {}
    for path in glob.glob(os.path.join(run_dir, 'events.out.tfevents.*')):
        try:
            for event in tf.compat.v1.train.summary_iterator(path):
                for value in event.summary.value:
                    if value.tag == 'loss':
                        losses.setdefault(event.step, []).append(value.simple_value)
        except tf.errors.DataLossError:  # the last record of a killed run may be cut
            pass
    return losses


def nvidia_machine(tmp_path, driver=None, gpus=(), smi_rows=()):
    """(environment, run_with_fakes.py fakes) simulating an NVIDIA machine: `driver`, a
    version for a fake driver file and a fake nvidia-smi printing `smi_rows` ('name,
    total MiB, free MiB'), or None for no driver; `gpus`, the GPUs TensorFlow is to see
    ({'name', 'compute_capability'} each). Any real nvidia-smi is taken off PATH, so the
    result is the same on any machine."""
    bin_dir = tmp_path / 'fake-nvidia-bin'
    bin_dir.mkdir(exist_ok=True)
    version_file = tmp_path / 'nvidia-version'
    smi = bin_dir / 'nvidia-smi'
    version_file.unlink(missing_ok=True)
    smi.unlink(missing_ok=True)
    if driver:
        version_file.write_text(f'NVRM version: NVIDIA UNIX x86_64 Kernel Module  {driver}  '
                                'Thu Jan  1 00:00:00 UTC 2026\n', encoding='utf-8')
        smi.write_text('#!/bin/sh\n' + ''.join(f"echo '{row}'\n" for row in smi_rows),
                       encoding='utf-8')
        smi.chmod(0o755)
    path = [str(bin_dir)] + [d for d in os.environ.get('PATH', '').split(os.pathsep)
                             if d and not os.path.exists(os.path.join(d, 'nvidia-smi'))]
    return ({'PATH': os.pathsep.join(path)},
            [f'nvidia_version_file={version_file}', f'gpus={json.dumps(list(gpus))}'])


def simulate_nvidia(monkeypatch, tmp_path, **machine):
    """nvidia_machine(tmp_path, **machine) in this process."""
    import run_with_fakes
    from gpt2tune import nvidia, resources
    env, fakes = nvidia_machine(tmp_path, **machine)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    values = dict(fake.split('=', 1) for fake in fakes)
    monkeypatch.setattr(nvidia, 'VERSION_FILE', values['nvidia_version_file'])
    monkeypatch.setattr(resources, 'gpus', resources.gpus)  # undone after the test
    monkeypatch.setattr(resources, 'gpu_details', resources.gpu_details)
    run_with_fakes.simulate_gpus(resources, json.loads(values['gpus']))


def losses_of(capsys):
    """The losses of the steps printed so far, and what was printed."""
    out = capsys.readouterr().out
    return [float(x) for x in re.findall(r'\] loss=(\S+) ', out)], out


def start_held_run(tmp_path, models_dir, corpus, step):
    """train.py in tmp_path, held by the fake after `step` until a signal: returned once
    it holds, its stdout still open."""
    import run_with_fakes
    cmd = run_with_fakes.command(f'hold_after_step={step}', 'train.py',
                                 *train_command(models_dir, corpus)[2:])
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=script_env())
    for line in proc.stdout:
        if line.startswith(f'fake: holding after step {step} '):
            return proc
    proc.kill()
    raise AssertionError(f'train.py ended before step {step}: exit {proc.wait()}')
