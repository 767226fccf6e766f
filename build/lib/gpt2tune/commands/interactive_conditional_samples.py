"""Ask GPT-2 to continue your prompts, typed at a prompt or read from a file.

    python src/interactive_conditional_samples.py --top_k 40 --temperature 0.7 --nsamples 10
    python src/interactive_conditional_samples.py --models_dir checkpoint --model_name run1
    python src/interactive_conditional_samples.py --prompts prompts.txt --nsamples 20 \
        --batch_size 8 --output jokes.jsonl --stop '\n'

Each sample stops at <|endoftext|> (one joke per sample); --nostop_at_endoftext generates
the full --length as the original script did. At the prompt, Ctrl-C stops the sample
being written; Ctrl-C or Ctrl-D with no sample running quits.
"""

import sys

import fire

from gpt2tune import cli, errors
from gpt2tune.commands.sample_flags import check_batches, fire_argv
from gpt2tune.flags import SHARED, fire_command
from gpt2tune.generate import kernels, sample, sample_files


@fire_command(options_after='batch_size', newer_options_after='models_dir')
def interact_model(options, model_name=SHARED, seed=SHARED, nsamples=1, batch_size=SHARED,
                   models_dir=SHARED, checkpoint=SHARED, precision=SHARED, prompts=None,
                   output=None, include_prefix=False, verbose=SHARED):
    """Interactively run the model.

    :nsamples=1 : Number of samples to return total (per prompt)
    :prompts=None : run the prompts of this file instead of asking: one per line, - for
     standard input, or .jsonl records with a "prompt" field
    :output=None : write the samples to this file: .jsonl (prompt, sample, tokens) or text
    :include_prefix=False : put the prompt before each sample
    """
    prompt_list = sample_files.read_prompts(prompts) if prompts else []
    if prompts:
        sample.check_batch_size(batch_size)
    else:
        check_batches(nsamples, batch_size)
    if output:
        sample_files.check_output(output)
    kernels.choose_precision(precision)
    cli.start_tensorflow(verbose)  # checked input first; --help needs none of it
    from gpt2tune.generate.generation import open_model
    gpt2, tokens = open_model(
        model_name=model_name, models_dir=models_dir, checkpoint=checkpoint,
        batch_size=batch_size, seed=seed, options=options, precision=precision,
        prompts=prompt_list)
    try:
        with sample_files.SampleWriter(output) as out:
            if prompts:
                run_prompts(gpt2, prompt_list, tokens, nsamples, out, include_prefix)
            else:
                prompt_loop(gpt2, nsamples, out, include_prefix)
    except KeyboardInterrupt:  # while running a prompts file: finished samples are kept
        print('interrupted', file=sys.stderr)
        sys.exit(130)
    finally:
        gpt2.close()


def run_prompts(gpt2, prompt_list, tokens, nsamples, out, include_prefix):
    """Every prompt's samples, batch_size rows at a time, written as each batch ends."""
    rows = [i for i in range(len(tokens)) for _ in range(nsamples)]
    for first in range(0, len(rows), gpt2.batch_size):
        batch = rows[first:first + gpt2.batch_size]
        samples = gpt2.samples([tokens[i] for i in batch])
        for i, s in zip(batch, samples, strict=True):
            out.write(i, prompt_list[i][1], gpt2.text(s, include_prefix), len(s.tokens))


def prompt_loop(gpt2, nsamples, out, include_prefix):
    """The 2019 loop: ask, sample, repeat. With batch 1 the text prints as it comes."""
    streaming = gpt2.batch_size == 1 and out.path is None
    while True:
        try:
            raw_text = input('Model prompt >>> ')
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if not raw_text:
            print('Prompt should not be empty!')
            continue
        try:
            tokens = gpt2.encode(raw_text)
            for first in range(0, nsamples, gpt2.batch_size):
                if streaming:
                    stream_one(gpt2, tokens, raw_text, first + 1, include_prefix)
                else:
                    for s in gpt2.samples([tokens], nsamples=gpt2.batch_size):
                        out.write(0, raw_text, gpt2.text(s, include_prefix), len(s.tokens))
        except KeyboardInterrupt:
            print('\n[sample stopped]')
        except errors.UserError as e:
            print(f'error: {e}')
        out.end_prompt()
        if streaming:
            print(sample_files.END_OF_PROMPT)


def stream_one(gpt2, tokens, raw_text, number, include_prefix):
    print(sample_files.SEPARATOR.format(number))
    if include_prefix:
        print(raw_text, end='')
    for piece in gpt2.stream(tokens):
        print(piece, end='', flush=True)
    print()


def main(argv):
    fire.Fire(interact_model, command=fire_argv(argv),
              name='interactive_conditional_samples.py')


if __name__ == '__main__':
    cli.run(main, sys.argv[1:])
