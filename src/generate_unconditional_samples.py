#!/usr/bin/env python3
"""Let GPT-2 write from nothing (each sample starts after <|endoftext|>).

    python src/generate_unconditional_samples.py --top_k 40 --nsamples 20 --output_file out.txt

nsamples=0 samples until interrupted. Each sample stops at its <|endoftext|> unless
--nostop_at_endoftext.
"""

import sys

import fire

import cli
import sample_files


def sample_model(model_name='117M', seed=None, nsamples=0, batch_size=1, length=None,
                 temperature=1, top_k=0, top_p=1, models_dir='models', checkpoint=None,
                 stop_at_endoftext=True, output_file=None, stop=(), repetition_penalty=1.0,
                 verbose=False):
    """Run the sample_model.

    :model_name=117M : String, which model to use
    :seed=None : Integer seed for random number generators, fix seed to reproduce results
    :nsamples=0 : Number of samples to return, if 0, continues to generate samples
     indefinately.
    :batch_size=1 : Number of batches (only affects speed/memory).
    :length=None : Number of tokens in generated text, if None (default), is determined by
     model hyperparameters; beyond the context window the window slides
    :temperature=1 : Float value controlling randomness in boltzmann distribution.
    :top_k=0 : Integer value controlling diversity: keep the k most likely tokens (0: all)
    :top_p=1 : Float, nucleus sampling: keep the most likely tokens up to this probability
     (1 or 0: off)
    :models_dir : path to parent folder containing model subfolders
    :checkpoint=None : a training run's folder or checkpoint prefix for the weights
    :stop_at_endoftext=True : end each sample at <|endoftext|>
    :output_file=None : write the samples to this file (.jsonl: one record each)
    :stop=() : end a sample before this text (repeatable; \\n is a newline)
    :repetition_penalty=1.0 : CTRL's penalty on tokens already in the sample (1: off)
    :verbose=False : show TensorFlow's own log lines (its errors always show)
    """
    if output_file:
        sample_files.check_output(output_file)
    cli.start_tensorflow(verbose)  # checked input first; --help needs none of it
    from generation import open_model
    gpt2, options, _ = open_model(
        model_name=model_name, models_dir=models_dir, checkpoint=checkpoint,
        batch_size=batch_size, nsamples=nsamples, seed=seed, length=length,
        temperature=temperature, top_k=top_k, top_p=top_p, stop=stop,
        repetition_penalty=repetition_penalty, stop_at_endoftext=stop_at_endoftext)
    generated = 0
    try:
        with sample_files.SampleWriter(output_file) as out:
            while nsamples == 0 or generated < nsamples:
                for s in gpt2.samples('', nsamples=gpt2.batch_size, options=options):
                    generated += 1
                    out.write(0, '', s.text, len(s.tokens))
    except KeyboardInterrupt:
        pass
    finally:
        gpt2.close()


if __name__ == '__main__':
    cli.run(fire.Fire, sample_model, command=sample_files.fire_argv(sys.argv[1:]),
            name='generate_unconditional_samples.py')
