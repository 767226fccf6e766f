"""The sampling scripts' command lines for python-fire: each script's own flags, with
every field of sample.SamplingOptions as a flag beside them (default and help line from
the field), and the argv rewriting fire needs.

    def interact_model(options, model_name='117M', seed=None, nsamples=1, batch_size=1,
                       models_dir='models', ...):
        '''Interactively run the model.

        :model_name=117M : String, which model to use
        ...
        '''
    fire.Fire(with_sampling_flags(interact_model, after='batch_size'),
              command=fire_argv(argv))
"""

import dataclasses
import inspect
import textwrap

import sample
from cli import UserError


def with_sampling_flags(script, *, after):
    """`script(options, **flags)` as fire must see it: one function of the script's flags
    with SamplingOptions' fields inserted after the flag `after` (as the 2019 scripts
    ordered them), in its signature and in its docstring's `:name=default : help` lines;
    called, it hands `script` the options as a SamplingOptions."""
    own = list(inspect.signature(script).parameters.values())[1:]
    at = [p.name for p in own].index(after) + 1
    options = [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                 default=f.default) for f in dataclasses.fields(
                                     sample.SamplingOptions)]
    signature = inspect.Signature(own[:at] + options + own[at:])

    def command(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        flags = bound.arguments
        return script(sample.SamplingOptions(**{p.name: flags.pop(p.name) for p in options}),
                      **flags)

    command.__name__ = script.__name__
    command.__signature__ = signature
    command.__doc__ = with_help_lines(inspect.getdoc(script), after)
    return command


def help_line(field):
    """A field's entry in the 2019 scripts' docstring style, wrapped as they were."""
    return textwrap.fill(f':{field.name}={field.default} : {field.metadata["help"]}',
                         width=84, subsequent_indent=' ')


def with_help_lines(doc, after):
    """`doc` with every SamplingOptions field's help line after the entry of `after`."""
    lines = doc.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f':{after}=')) + 1
    while at < len(lines) and lines[at].startswith(' '):  # the entry's continuation
        at += 1
    entries = [help_line(f) for f in dataclasses.fields(sample.SamplingOptions)]
    return '\n'.join(lines[:at] + entries + lines[at:])


def unescape(text):
    r"""A stop text from the command line, where \n, \t and \\ stand for themselves."""
    return text.replace('\\\\', '\0').replace('\\n', '\n').replace('\\t', '\t').replace(
        '\0', '\\')


def fire_argv(argv):
    """argv as fire must see it: every `--stop TEXT` (fire keeps only the last) gathered
    into one `--stop=(...)` tuple, escapes resolved; `--prompts -` (which fire reads as
    True) as `--prompts=-`."""
    stops, rest = take_repeated(argv, '--stop')
    if stops:
        rest.append(f'--stop={tuple(unescape(s) for s in stops)!r}')
    prompts, rest = take_repeated(rest, '--prompts')
    return rest + [f'--prompts={p}' for p in prompts]


def take_repeated(argv, flag):
    """(the values of every `flag VALUE` or `flag=VALUE` in argv, the other arguments)."""
    values, rest, i = [], [], 0
    while i < len(argv):
        if argv[i] == flag and i + 1 < len(argv):
            values.append(argv[i + 1])
            i += 2
            continue
        if argv[i].startswith(flag + '='):
            values.append(argv[i][len(flag) + 1:])
        else:
            rest.append(argv[i])
        i += 1
    return values, rest


def check_batches(nsamples, batch_size):
    """The 2019 rule where samples come a whole batch at a time (a typed prompt's, or
    unconditional ones): --batch_size divides --nsamples."""
    sample.check_batch_size(batch_size)
    if nsamples % batch_size:
        raise UserError(f'--nsamples {nsamples} is not a multiple of --batch_size {batch_size}')
