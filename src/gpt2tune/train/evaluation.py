"""What a run's chief learns about the model between steps (training.py's Trainer): the
validation loss and perplexity, the best model kept apart, the evaluations without a
better loss that early stopping counts; and samples, decoded by the engine every surface
uses.

    evaluation = Evaluation(c, sess, g, loaded, adapters, folder, summaries,
                            val_batches, sampling, samples)
    evaluation.evaluate(step)         # validation that counts for early stopping
    evaluation.write_samples(step)    # samples/<run>/samples-<step>
"""

import math

import numpy as np

from gpt2tune.generate import engine, numpy_model, sample
from gpt2tune.model import lora, model_dir


class Evaluation:
    def __init__(self, c, sess, g, loaded, adapters, folder, summaries, val_batches, sampling,
                 samples):
        self.c, self.sess, self.g = c, sess, g
        self.loaded, self.adapters = loaded, adapters
        self.folder, self.summaries, self.samples = folder, summaries, samples
        self.val_batches, self.sampling = val_batches, sampling
        self.sample_seeds = sample.Seeds(c.seed)
        self.best_loss = math.inf  # the run folder's, once it is open
        self.stale = 0  # evaluations in a row without a better validation loss

    def validation_loss(self):
        return float(np.mean([self.sess.run(self.g.loss, {self.g.context: batch})
                              for batch in self.val_batches]))

    def evaluate(self, step):
        """A validation that counts for early stopping."""
        self.stale = 0 if self.validate(step) else self.stale + 1

    def validate(self, step):
        """Validation loss and perplexity; keeps the best model apart. Returns whether it
        is better than the best so far."""
        print('Calculating validation loss...')
        val_loss = self.validation_loss()
        print(f'[{step} | validation] loss={val_loss:.4f} '
              f'perplexity={math.exp(min(val_loss, 700)):.2f}')
        self.summaries.log(step, val_loss=val_loss, val_perplexity=math.exp(min(val_loss, 700)))
        if val_loss < self.best_loss and step > 0:
            self.folder.save_best(self.sess, step, val_loss)
            self.best_loss = val_loss
            return True
        return False

    def write_samples(self, step):
        """--sample_num samples, each starting after <|endoftext|>, into samples/<run>."""
        print('Generating samples...')
        enc = self.loaded.encoder
        prompts = [[enc.eot_token]] * self.c.sample_num
        # float32: exact, and no second TensorFlow graph beside the training step's.
        forward = numpy_model.Forward(self.arrays(), self.loaded.hparams, 'float32')
        samples = engine.generate(engine.Engine(forward, min(self.c.batch_size, len(prompts))),
                                  prompts, self.sampling, self.sample_seeds.take(len(prompts)),
                                  sample.Stopper(enc, self.sampling))
        texts = [f'======== SAMPLE {i + 1} ========\n{s.text}\n'
                 for i, s in enumerate(samples)]
        print(texts[-1])
        self.samples.write(step, texts)

    def arrays(self):
        """The model's weights now (release names -> float32 arrays), adapters merged in."""
        arrays = {name: a.astype(np.float32, copy=False) for name, a in self.sess.run(
            {v.op.name: v for v in model_dir.model_variables()}).items()}
        if self.adapters is None:
            return arrays
        factors = self.sess.run({v.op.name: v for v in model_dir.adapter_variables()})
        return lora.merge(arrays, factors, self.adapters)
