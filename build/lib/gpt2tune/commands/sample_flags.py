"""The sampling scripts' command lines beyond their flags' declarations (flags.py): the
argv rewriting fire needs for repeated flags, and the 2019 rule on --batch_size.

    fire.Fire(interact_model, command=fire_argv(argv))   # --stop a --stop b, --prompts -
"""

from gpt2tune.errors import UserError
from gpt2tune.generate import sample


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
