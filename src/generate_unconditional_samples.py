#!/usr/bin/env python3
"""Let GPT-2 write from nothing (each sample starts after <|endoftext|>).

    python src/generate_unconditional_samples.py --top_k 40 --nsamples 20 --output_file out.txt

nsamples=0 samples until interrupted. Each sample stops at its <|endoftext|> unless
--nostop_at_endoftext.
"""

import sys

import fire

import cli
from sample import load_generator


def sample_model(model_name='117M', seed=None, nsamples=0, batch_size=1, length=None,
                 temperature=1, top_k=0, top_p=1, models_dir='models', checkpoint=None,
                 stop_at_endoftext=True, output_file=None):
    """Run the sample_model.

    :model_name=117M : String, which model to use
    :seed=None : Integer seed for random number generators, fix seed to reproduce results
    :nsamples=0 : Number of samples to return, if 0, continues to generate samples
     indefinately.
    :batch_size=1 : Number of batches (only affects speed/memory).
    :length=None : Number of tokens in generated text, if None (default), is determined by
     model hyperparameters
    :temperature=1 : Float value controlling randomness in boltzmann distribution.
    :top_k=0 : Integer value controlling diversity: keep the k most likely tokens (0: all)
    :top_p=1 : Float, nucleus sampling: keep the most likely tokens up to this probability
     (1 or 0: off)
    :models_dir : path to parent folder containing model subfolders
    :checkpoint=None : a training run's folder or checkpoint prefix for the weights
    :stop_at_endoftext=True : end each sample at <|endoftext|>
    :output_file=None : write the samples to this file instead of standard output
    """
    sess, gen, enc, length = load_generator(
        model_name=model_name, models_dir=models_dir, checkpoint=checkpoint,
        batch_size=batch_size, nsamples=nsamples, length=length, temperature=temperature,
        top_k=top_k, top_p=top_p, seed=seed)
    out_file = open(output_file, 'w', encoding='utf-8') if output_file else sys.stdout
    stop_token = enc.eot_token if stop_at_endoftext else None
    start = [[enc.eot_token]] * gen.batch_size
    generated = 0
    try:
        while nsamples == 0 or generated < nsamples:
            for tokens in gen.generate(sess, start, length, stop_token=stop_token):
                generated += 1
                print('=' * 40 + ' SAMPLE ' + str(generated) + ' ' + '=' * 40, file=out_file)
                print(enc.decode(tokens), file=out_file, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        sess.close()
        if out_file is not sys.stdout:
            out_file.close()


if __name__ == '__main__':
    cli.run(fire.Fire, sample_model)
