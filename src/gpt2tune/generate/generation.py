"""Text from a model loaded once: the Python API behind the sampling scripts.

    from gpt2tune import GPT2

    gpt2 = GPT2.load('models/117M')          # a model directory or a run folder
    jokes = gpt2.generate(['Why did the chicken cross the road?|', 'A man walks into a bar|'],
                          nsamples=3, length=60, top_k=40, temperature=0.7)
    for piece in gpt2.stream('Knock knock|', length=40):
        print(piece, end='', flush=True)
    gpt2.close()

Every row computes what it would alone, with its own random generator: the same seed
gives the same samples at any batch_size (engine.py). `precision` ('auto', 'float32' or
'bfloat16', kernels.py) is chosen once, when the model loads. Importing this module
loads no TensorFlow; loading a model starts it without its start-up lines (the program's
own logging is left as it is; TF_CPP_MIN_LOG_LEVEL set beforehand shows them).
"""

import sys

from gpt2tune import cli
from gpt2tune.errors import UserError
from gpt2tune.generate import engine, kernels, numpy_model, sample


def tensorflow_model_dir():
    """model_dir, TensorFlow started first: a program loading a model through this API
    sees none of TensorFlow's start-up lines, nor the scripts' device line."""
    cli.start_tensorflow(report_devices=False)
    from gpt2tune.model import model_dir
    return model_dir


class GPT2:
    """A model loaded once (`loaded`: a model_dir.ModelDir); generate and stream as often
    as you like. A call's keywords are sampling options (the fields of
    sample.SamplingOptions) changing this model's defaults, `options` (default: the
    fields' defaults)."""

    def __init__(self, loaded, *, batch_size=8, seed=None, options=None, precision='auto'):
        sample.check_batch_size(batch_size)
        self.defaults = (options or sample.SamplingOptions()).checked(loaded.hparams)
        self.precision, self.precision_reason = kernels.choose_precision(precision)
        self.model, self.batch_size = loaded, batch_size
        self.hparams, self.encoder = loaded.hparams, loaded.encoder
        self.seeds = sample.Seeds(seed)
        arrays = tensorflow_model_dir().load_arrays(loaded.checkpoint, self.hparams)
        self.forward = numpy_model.Forward(arrays, self.hparams, self.precision)
        # One engine for every call: its cache's memory, once written, stays in use.
        self.engine = engine.Engine(self.forward, batch_size)

    @classmethod
    def load(cls, path, *, checkpoint=None, batch_size=8, seed=None, precision='auto'):
        """`path`: a model directory (models/117M) or a training run's folder
        (checkpoint/run1); `checkpoint` takes the weights from elsewhere."""
        return cls(tensorflow_model_dir().load_path(path, checkpoint), batch_size=batch_size,
                   seed=seed, precision=precision)

    def describe(self):
        """Which kernel decodes, and why: the line the sampling scripts print."""
        return kernels.decoding_line(self.forward.kernel, self.precision_reason)

    def options(self, **keywords):
        """This model's default SamplingOptions with the keywords' changes, checked."""
        if not keywords:
            return self.defaults
        return self.defaults.changed(**keywords).checked(self.hparams)

    def encode(self, text):
        return encode_prompt(self.model, text)

    def samples(self, prompts, *, nsamples=1, **keywords):
        """sample.Sample objects: `nsamples` for each prompt (a text or a token list),
        prompt by prompt; up to batch_size rows decode at once, a row joining as soon as
        another ends."""
        options = self.options(**keywords)
        if isinstance(prompts, str):
            prompts = [prompts]
        tokens = [p if isinstance(p, list) else encode_prompt(self.model, p) for p in prompts]
        rows = [t for t in tokens for _ in range(nsamples)]
        return engine.generate(self.engine, rows, options, self.seeds.take(len(rows)),
                               sample.Stopper(self.encoder, options))

    def generate(self, prompts, *, nsamples=1, include_prefix=False, return_tokens=False,
                 **options):
        """Texts (or, with return_tokens, generated token id lists): `nsamples` for each
        prompt, prompt by prompt. `include_prefix` puts each prompt before its sample."""
        samples = self.samples(prompts, nsamples=nsamples, **options)
        if return_tokens:
            return [s.tokens for s in samples]
        return [self.text(s, include_prefix) for s in samples]

    def text(self, sampled, include_prefix=False):
        """A Sample's text, after its prompt with include_prefix (not after the
        <|endoftext|> an empty prompt starts from)."""
        if not include_prefix or sampled.prompt == [self.encoder.eot_token]:
            return sampled.text
        return self.encoder.decode(sampled.prompt) + sampled.text

    def stream(self, prompt, **keywords):
        """The text of one sample after `prompt` (a text or a token list), piece by piece
        as it is generated."""
        options = self.options(**keywords)
        tokens = prompt if isinstance(prompt, list) else encode_prompt(self.model, prompt)
        text = TextStream(self.encoder, options.stop)
        request = engine.Request([tokens], options, self.seeds.take(1),
                                 sample.Stopper(self.encoder, options))
        self.engine.add(request)
        row = request.rows[0]
        try:
            while self.engine.busy():
                self.engine.step()
                # At its end (a stop, or its full length) what was held back (a cut UTF-8
                # character, a possible stop text's beginning) comes out too.
                piece = text.update(row.new, row.end)
                if piece:
                    yield piece
        finally:  # a stream left early (Ctrl-C) leaves the engine idle
            self.engine.clear()

    def close(self):
        self.forward.close()


def encode_prompt(loaded, text, where='prompt'):
    """A prompt's tokens; an empty prompt starts after <|endoftext|>. One longer than the
    context is refused, named by `where`."""
    tokens = loaded.encoder.encode(text) if text else [loaded.encoder.eot_token]
    if len(tokens) > loaded.hparams.n_ctx:
        raise UserError(f'{where}: {len(tokens)} tokens, more than the model\'s context of '
                        f'{loaded.hparams.n_ctx}')
    return tokens


def open_model(*, model_name, models_dir, checkpoint, batch_size, seed, options,
               precision='auto', prompts=()):
    """What both sampling scripts start with: options (SamplingOptions) and prompts
    ([(where, text)]) checked against the model before its weights load. Returns (GPT2
    sampling with those options, the prompts' token lists)."""
    loaded = tensorflow_model_dir().load(model_name, models_dir, checkpoint)
    options = options.checked(loaded.hparams)
    tokens = [encode_prompt(loaded, text, where) for where, text in prompts]
    print('Loading checkpoint', loaded.checkpoint, file=sys.stderr)
    gpt2 = GPT2(loaded, batch_size=batch_size, seed=seed, options=options,
                precision=precision)
    print(gpt2.describe(), file=sys.stderr)
    return gpt2, tokens


class TextStream:
    """The printable part of a growing sample: text not ending in a cut UTF-8 character,
    and not yet possibly the beginning of a stop text."""

    def __init__(self, enc, stop=()):
        self.enc, self.printed = enc, 0
        self.hold = max((len(s) - 1 for s in stop), default=0)

    def update(self, tokens, end):
        """What to print now: new text since the last call (the rest of it once ended)."""
        if end is not None:
            text = end[1]
        else:
            text = self.enc.decode(tokens).rstrip('\ufffd')
            text = text[:max(len(text) - self.hold, 0)]
        piece = text[self.printed:]
        self.printed = max(self.printed, len(text))
        return piece
