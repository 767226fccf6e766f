#!/usr/bin/env python3
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

import cli
import sample_files


def interact_model(model_name='117M', seed=None, nsamples=1, batch_size=1, length=None,
                   temperature=1, top_k=0, top_p=1, models_dir='models', checkpoint=None,
                   stop_at_endoftext=True, prompts=None, output=None, include_prefix=False,
                   stop=(), repetition_penalty=1.0, verbose=False):
    """Interactively run the model.

    :model_name=117M : String, which model to use
    :seed=None : Integer seed for random number generators, fix seed to reproduce results
    :nsamples=1 : Number of samples to return total (per prompt)
    :batch_size=1 : Number of batches (only affects speed/memory). Must divide nsamples.
    :length=None : Number of tokens in generated text, if None (default), is determined by
     model hyperparameters; beyond the context window the window slides
    :temperature=1 : Float value controlling randomness in boltzmann distribution.
    :top_k=0 : Integer value controlling diversity: keep the k most likely tokens (0: all)
    :top_p=1 : Float, nucleus sampling: keep the most likely tokens up to this probability
     (1 or 0: off)
    :models_dir : path to parent folder containing model subfolders
    :checkpoint=None : a training run's folder (checkpoint/run1) or checkpoint prefix to
     take the weights from instead of models_dir/model_name
    :stop_at_endoftext=True : end each sample at <|endoftext|>
    :prompts=None : run the prompts of this file instead of asking: one per line, - for
     standard input, or .jsonl records with a "prompt" field
    :output=None : write the samples to this file: .jsonl (prompt, sample, tokens) or text
    :include_prefix=False : put the prompt before each sample
    :stop=() : end a sample before this text (repeatable; \\n is a newline)
    :repetition_penalty=1.0 : CTRL's penalty on tokens already in the sample (1: off)
    :verbose=False : show TensorFlow's own log lines (its errors always show)
    """
    prompt_list = sample_files.read_prompts(prompts) if prompts else []
    if output:
        sample_files.check_output(output)
    cli.start_tensorflow(verbose)  # checked input first; --help needs none of it
    from generation import open_model
    gpt2, options, tokens = open_model(
        model_name=model_name, models_dir=models_dir, checkpoint=checkpoint,
        batch_size=batch_size, nsamples=nsamples, seed=seed, prompts=prompt_list,
        length=length, temperature=temperature, top_k=top_k, top_p=top_p,
        repetition_penalty=repetition_penalty, stop=stop,
        stop_at_endoftext=stop_at_endoftext)
    try:
        with sample_files.SampleWriter(output) as out:
            if prompts:
                run_prompts(gpt2, options, prompt_list, tokens, nsamples, out, include_prefix)
            else:
                prompt_loop(gpt2, options, nsamples, out, include_prefix)
    except KeyboardInterrupt:  # while running a prompts file: finished samples are kept
        print('interrupted', file=sys.stderr)
        sys.exit(130)
    finally:
        gpt2.close()


def run_prompts(gpt2, options, prompt_list, tokens, nsamples, out, include_prefix):
    """Every prompt's samples, batch_size rows at a time, written as each batch ends."""
    rows = [i for i in range(len(tokens)) for _ in range(nsamples)]
    for first in range(0, len(rows), gpt2.batch_size):
        batch = rows[first:first + gpt2.batch_size]
        samples = gpt2.samples([tokens[i] for i in batch], options=options)
        for i, s in zip(batch, samples, strict=True):
            out.write(i, prompt_list[i][1], gpt2.text(s, include_prefix), len(s.tokens))


def prompt_loop(gpt2, options, nsamples, out, include_prefix):
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
                    stream_one(gpt2, options, tokens, raw_text, first + 1, include_prefix)
                else:
                    for s in gpt2.samples([tokens], nsamples=gpt2.batch_size, options=options):
                        out.write(0, raw_text, gpt2.text(s, include_prefix), len(s.tokens))
        except KeyboardInterrupt:
            print('\n[sample stopped]')
        except cli.UserError as e:
            print(f'error: {e}')
        out.end_prompt()
        if streaming:
            print(sample_files.END_OF_PROMPT)


def stream_one(gpt2, options, tokens, raw_text, number, include_prefix):
    print(sample_files.SEPARATOR.format(number))
    if include_prefix:
        print(raw_text, end='')
    for piece in gpt2.stream(tokens, options=options):
        print(piece, end='', flush=True)
    print()


def main(argv):
    fire.Fire(interact_model, command=sample_files.fire_argv(argv),
              name='interactive_conditional_samples.py')


if __name__ == '__main__':
    cli.run(main, sys.argv[1:])
