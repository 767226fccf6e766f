#!/usr/bin/env python3
"""Ask GPT-2 to continue your prompts.

    python src/interactive_conditional_samples.py --top_k 40 --temperature 0.7 --nsamples 10
    python src/interactive_conditional_samples.py --models_dir checkpoint --model_name run1

Each sample stops at <|endoftext|> (one joke per sample); --nostop_at_endoftext generates
the full --length as the original script did. Ctrl-D or Ctrl-C quits.
"""

import fire

import cli
from sample import load_generator


def interact_model(model_name='117M', seed=None, nsamples=1, batch_size=1, length=None,
                   temperature=1, top_k=0, top_p=1, models_dir='models', checkpoint=None,
                   stop_at_endoftext=True):
    """Interactively run the model.

    :model_name=117M : String, which model to use
    :seed=None : Integer seed for random number generators, fix seed to reproduce results
    :nsamples=1 : Number of samples to return total
    :batch_size=1 : Number of batches (only affects speed/memory). Must divide nsamples.
    :length=None : Number of tokens in generated text, if None (default), is determined by
     model hyperparameters
    :temperature=1 : Float value controlling randomness in boltzmann distribution.
    :top_k=0 : Integer value controlling diversity: keep the k most likely tokens (0: all)
    :top_p=1 : Float, nucleus sampling: keep the most likely tokens up to this probability
     (1 or 0: off)
    :models_dir : path to parent folder containing model subfolders
    :checkpoint=None : a training run's folder (checkpoint/run1) or checkpoint prefix to
     take the weights from instead of models_dir/model_name
    :stop_at_endoftext=True : end each sample at <|endoftext|>
    """
    sess, gen, enc, length = load_generator(
        model_name=model_name, models_dir=models_dir, checkpoint=checkpoint,
        batch_size=batch_size, nsamples=nsamples, length=length, temperature=temperature,
        top_k=top_k, top_p=top_p, seed=seed)
    stop_token = enc.eot_token if stop_at_endoftext else None
    try:
        while True:
            raw_text = input('Model prompt >>> ')
            while not raw_text:
                print('Prompt should not be empty!')
                raw_text = input('Model prompt >>> ')
            context_tokens = enc.encode(raw_text)
            generated = 0
            for _ in range(nsamples // batch_size):
                out = gen.generate(sess, [context_tokens] * gen.batch_size, length,
                                   stop_token=stop_token)
                for tokens in out:
                    generated += 1
                    print('=' * 40 + ' SAMPLE ' + str(generated) + ' ' + '=' * 40)
                    print(enc.decode(tokens))
            print('=' * 80)
    except (EOFError, KeyboardInterrupt):
        print()
    finally:
        sess.close()


if __name__ == '__main__':
    cli.run(fire.Fire, interact_model)
