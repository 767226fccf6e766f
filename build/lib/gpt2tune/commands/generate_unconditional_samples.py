"""Let GPT-2 write from nothing (each sample starts after <|endoftext|>).

    python src/generate_unconditional_samples.py --top_k 40 --nsamples 20 --output_file out.txt

nsamples=0 samples until interrupted. Each sample stops at its <|endoftext|> unless
--nostop_at_endoftext.
"""

import sys

import fire

from gpt2tune import cli
from gpt2tune.commands.sample_flags import check_batches, fire_argv
from gpt2tune.flags import SHARED, fire_command
from gpt2tune.generate import kernels, sample_files


@fire_command(options_after='batch_size', newer_options_after='models_dir')
def sample_model(options, model_name=SHARED, seed=SHARED, nsamples=0, batch_size=SHARED,
                 models_dir=SHARED, checkpoint=SHARED, precision=SHARED, output_file=None,
                 verbose=SHARED):
    """Run the sample_model.

    :nsamples=0 : Number of samples to return, if 0, continues to generate samples
     indefinately.
    :output_file=None : write the samples to this file (.jsonl: one record each)
    """
    check_batches(nsamples, batch_size)
    if output_file:
        sample_files.check_output(output_file)
    kernels.choose_precision(precision)
    cli.start_tensorflow(verbose)  # checked input first; --help needs none of it
    from gpt2tune.generate.generation import open_model
    gpt2, _ = open_model(model_name=model_name, models_dir=models_dir, checkpoint=checkpoint,
                         batch_size=batch_size, seed=seed, options=options,
                         precision=precision)
    generated = 0
    try:
        with sample_files.SampleWriter(output_file) as out:
            while nsamples == 0 or generated < nsamples:
                for s in gpt2.samples('', nsamples=gpt2.batch_size):
                    generated += 1
                    out.write(0, '', s.text, len(s.tokens))
    except KeyboardInterrupt:
        pass
    finally:
        gpt2.close()


def main(argv):
    fire.Fire(sample_model, command=fire_argv(argv), name='generate_unconditional_samples.py')


if __name__ == '__main__':
    cli.run(main, sys.argv[1:])
