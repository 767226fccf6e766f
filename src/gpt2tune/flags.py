"""Flags that several commands take, declared once: each command's parser (argparse,
train.py's TrainConfig, or python-fire's view of a 2019-style script) takes its default
and help from here.

    flags.add(parser, 'models_dir', 'model_name', 'checkpoint', 'verbose')   # argparse
    model_name: str = flags.field('model_name')                              # a dataclass

    @flags.fire_command(options_after='batch_size', newer_options_after='models_dir')
    def interact_model(options, model_name=SHARED, seed=SHARED, nsamples=1, ...):
        '''Interactively run the model.

        :nsamples=1 : Number of samples to return total (per prompt)
        '''

A fire script names a shared flag with the default SHARED; its docstring gives only its
own flags' `:name=default : help` lines. The sampling options (sample.SamplingOptions)
go in where the 2019 scripts had them, the newer ones after their last flag.
"""

import dataclasses
import inspect
import textwrap

from gpt2tune.generate import kernels, sample
from gpt2tune.model.hparams import SHAPES


@dataclasses.dataclass(frozen=True)
class Flag:
    default: object
    help: str
    type: type = str
    metavar: str | None = None
    choices: tuple | None = None


FLAGS = {
    'model_name': Flag('117M', 'String, which model to use', metavar='MODEL'),
    'models_dir': Flag('models', 'path to parent folder containing model subfolders (or '
                       'training runs\' folders)', metavar='DIR'),
    'checkpoint': Flag(None, 'a training run\'s folder (checkpoint/run1) or checkpoint '
                       'prefix to take the weights from instead of the model directory\'s',
                       metavar='PATH'),
    'verbose': Flag(False, 'show the libraries\' own log lines (TensorFlow\'s, the server\'s); '
                    'errors always show', bool),
    'seed': Flag(None, 'Integer seed for random number generators, fix seed to reproduce '
                 'results', int),
    'batch_size': Flag(1, 'Number of rows sampled at once (only affects speed/memory). With '
                       '--prompts different prompts share a batch; otherwise it must divide '
                       'nsamples', int),
    'combine': Flag(50000, 'Concatenate input files with <|endoftext|> separator into chunks '
                    'of this minimum size', int, 'CHARS'),
    'encoding': Flag('utf-8', 'Set the encoding for reading and writing files.'),
    'vocab_dir': Flag(None, 'A folder with GPT-2\'s encoder.json and vocab.bpe',
                      metavar='DIR'),
    'precision': Flag('auto', 'Precision of the decoder\'s matrix products: float32 (what '
                      'auto picks), bfloat16 (faster for many rows where the CPU has '
                      'bfloat16 instructions), or int8 (weights and activations rounded to 8 '
                      'bits: 2.7-2.9x float32 where measured, on a CPU with VNNI; '
                      'slightly different numbers; only when asked for)',
                      choices=kernels.PRECISIONS),
    'size': Flag(None, 'A model shape: a released model\'s, or tiny (what CI checks with)',
                 choices=tuple(SHAPES)),
}

SHARED = object()  # the default of a fire script's parameter that is a flag of FLAGS

# The sampling options OpenAI's 2019 scripts took, which stand where they stood (a value
# given by position keeps its meaning); the newer ones go after the scripts' last flag.
OPTIONS_OF_2019 = ('length', 'temperature', 'top_k', 'top_p')


def add(parser, *names, **overrides):
    """argparse flags for these FLAGS (`overrides`: argparse keywords, as required=True)."""
    for name in names:
        flag = FLAGS[name]
        if flag.type is bool:
            parser.add_argument(f'--{name}', action='store_true', help=flag.help)
            continue
        keywords = dict(type=flag.type, default=flag.default, help=flag.help,
                        metavar=flag.metavar, choices=flag.choices)
        parser.add_argument(f'--{name}', **{**keywords, **overrides})


def field(name):
    """A dataclass field for this flag, with the metadata train_config's parser reads."""
    flag = FLAGS[name]
    return dataclasses.field(default=flag.default, metadata={
        'help': flag.help, 'metavar': flag.metavar, 'choices': flag.choices})


def fire_command(options_after=None, newer_options_after=None):
    """A decorator making `script(options, **flags)` (or `script(**flags)` with no
    `options_after`) one function as fire must see it: SHARED defaults filled in from
    FLAGS, SamplingOptions' fields inserted after the flag `options_after` (the newer
    ones after `newer_options_after`), each in the signature and as a `:name=default :
    help` line of the docstring; called, it hands `script` the options as a
    SamplingOptions."""
    def wrap(script):
        own = list(inspect.signature(script).parameters.values())
        if options_after:
            own = own[1:]
        own = [p.replace(default=FLAGS[p.name].default) if p.default is SHARED else p
               for p in own]
        options = [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                     default=f.default)
                   for f in dataclasses.fields(sample.SamplingOptions)] if options_after else []
        newer = [p for p in options if newer_options_after and p.name not in OPTIONS_OF_2019]
        for after, inserted in ((newer_options_after, newer),
                                (options_after, [p for p in options if p not in newer])):
            if inserted:  # the later place first: the earlier insertion moves it
                at = [p.name for p in own].index(after) + 1
                own[at:at] = inserted
        signature = inspect.Signature(own)

        def command(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = bound.arguments
            if not options_after:
                return script(**values)
            return script(sample.SamplingOptions(
                **{p.name: values.pop(p.name) for p in options}), **values)

        command.__name__ = script.__name__
        command.__signature__ = signature
        command.__doc__ = docstring(inspect.getdoc(script), signature)
        return command
    return wrap


def docstring(doc, signature):
    """`doc`'s text, then a `:name=default : help` entry per parameter of `signature`:
    the script's own from `doc`, the others from FLAGS or SamplingOptions."""
    lines = doc.splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith(':')), len(lines))
    entries, name = {}, None
    for line in lines[first:]:
        if line.startswith(':'):
            name = line[1:].split('=')[0].split(' ')[0]
            entries[name] = [line]
        else:
            entries[name].append(line)  # an entry's continuation
    declared = {**{n: f.help for n, f in FLAGS.items()},
                **{f.name: f.metadata['help'] for f in dataclasses.fields(
                    sample.SamplingOptions)}}
    body = []
    for p in signature.parameters.values():
        body += entries.get(p.name) or [help_line(p.name, p.default, declared[p.name])]
    return '\n'.join(lines[:first] + body)


def help_line(name, default, help):
    """An entry in the 2019 scripts' docstring style, wrapped as they were."""
    return textwrap.fill(f':{name}={default} : {help}', width=84, subsequent_indent=' ')

