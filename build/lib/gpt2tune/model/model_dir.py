"""Model directories in OpenAI's release layout (its file names are in release.py), and
the checkpoints in them.

Every script that loads a model goes through `load` and `restore` here. A checkpoint of
LoRA adapters (lora.py) reads as its base's weights with the adapters merged in.
"""

import dataclasses
import os
import shutil

import numpy as np
import tensorflow as tf

from gpt2tune.data import encoder
from gpt2tune.errors import UserError, user_path
from gpt2tune.model import lora, model
from gpt2tune.model.hparams import HParams, variable_shapes
from gpt2tune.model.release import (
    CHECKPOINT,
    CHECKPOINT_STATE,
    ENCODER,
    ENDOFTEXT,
    HPARAMS,
    VOCAB_FILES,
)

tf1 = tf.compat.v1


class CheckpointMismatch(UserError):
    """A checkpoint of another model shape than hparams.json describes."""


def find_checkpoint(path):
    """The checkpoint prefix in a directory (the one its state file names, else the
    release's), or `path` itself when it is a prefix."""
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest:
            return latest
        if os.path.isfile(os.path.join(path, f'{CHECKPOINT}.index')):
            return os.path.join(path, CHECKPOINT)
        raise UserError(f'{path}: no checkpoint (neither a `{CHECKPOINT_STATE}` state file '
                        f'naming existing files nor {CHECKPOINT}.index)')
    if os.path.isfile(path + '.index'):
        return path
    raise UserError(f'{path}: no such checkpoint directory or checkpoint prefix')


def stored_variables(ckpt):
    """{name: shape} of a checkpoint's variables."""
    try:
        return dict(tf.train.list_variables(ckpt))
    except (tf.errors.OpError, ValueError) as e:
        raise UserError(f'{ckpt}: unreadable checkpoint ({e.__class__.__name__})') from None


def lora_checkpoint(ckpt):
    """The lora.LoraCheckpoint of a checkpoint of adapters, else None."""
    stored = stored_variables(ckpt)
    return lora.read_config(ckpt) if any(map(lora.is_adapter, stored)) else None


def check_checkpoint(ckpt, hparams, base=None):
    """Every release variable is in the checkpoint with the shape hparams.json implies
    (for adapters: in their base, `base` if given, else the one lora.json names, and the
    adapters' shapes)."""
    stored = stored_variables(ckpt)
    if any(map(lora.is_adapter, stored)):
        check_checkpoint(lora.check_adapters(ckpt, stored, hparams, base).base, hparams)
        return
    for name, shape in variable_shapes(hparams).items():
        if name not in stored:
            raise CheckpointMismatch(f'{ckpt}: variable {name} is missing')
        if list(stored[name]) != shape:
            raise CheckpointMismatch(f'{ckpt}: variable {name} has shape {list(stored[name])} but '
                            f'hparams.json implies {shape}')


@dataclasses.dataclass(frozen=True)
class ModelDir:
    """A model directory, resolved and checked: where it is, its shape, its vocabulary
    and the checkpoint prefix its weights come from."""
    path: str
    hparams: HParams
    encoder: encoder.Encoder
    checkpoint: str


def load_path(path, checkpoint=None):
    """The ModelDir of a model directory or training run folder given by its path
    (models/117M, checkpoint/run1, ~/models/jokes)."""
    path = os.path.normpath(user_path(path))
    return load(os.path.basename(path), os.path.dirname(path) or '.', checkpoint)


def load(model_name, models_dir='models', checkpoint=None, *, allow_special=True):
    """The ModelDir of `models_dir/model_name`; `checkpoint` (a training run's folder or
    a prefix) overrides where the weights come from."""
    directory = os.path.join(user_path(models_dir), model_name)
    if not os.path.isdir(directory):
        raise UserError(f'{directory}: no such model directory; `sh download_model.sh '
                        f'{model_name}` downloads a released model')
    missing = [f for f in (HPARAMS, *VOCAB_FILES)
               if not os.path.isfile(os.path.join(directory, f))]
    if missing:
        raise UserError(f'{directory}: missing {", ".join(missing)}')
    hparams = HParams.from_json(os.path.join(directory, HPARAMS))
    enc = encoder.load_encoder(directory, allow_special=allow_special)
    if enc.eot_token is None:
        raise UserError(f'{directory}/{ENCODER}: has no {ENDOFTEXT} token, which '
                        'separates documents and ends samples; use a GPT-2 vocabulary')
    if enc.n_vocab > hparams.n_vocab:
        raise UserError(f'{directory}: {ENCODER} has {enc.n_vocab} tokens but {HPARAMS} '
                        f'n_vocab is {hparams.n_vocab}')
    ckpt = find_checkpoint(user_path(checkpoint) if checkpoint else directory)
    check_checkpoint(ckpt, hparams)
    return ModelDir(directory, hparams, enc, ckpt)


def model_variables():
    """The release checkpoint's variables in this graph (not optimizer slots, not LoRA
    adapters)."""
    return [v for v in tf1.get_collection(tf1.GraphKeys.TRAINABLE_VARIABLES, scope='model/')
            if not lora.is_adapter(v.name)]


def adapter_variables():
    """The LoRA adapters' variables in this graph."""
    return [v for v in tf1.get_collection(tf1.GraphKeys.TRAINABLE_VARIABLES, scope='model/')
            if lora.is_adapter(v.name)]


def restore(sess, ckpt):
    """Load the model's weights; other variables in the checkpoint are ignored. Adapters
    are merged into their base's weights one matrix at a time."""
    adapted = lora_checkpoint(ckpt)
    if adapted is None:
        # The checkpoint's float32 loads as it is. A variable held in another dtype (a LoRA
        # run's frozen matrices in bfloat16) gets its cast, all in one run (each new op or
        # fetch costs the session a copy of the whole graph), the reads chained so that
        # one matrix's float32 is in memory at a time.
        stored_dtype = [v for v in model_variables() if v.dtype.base_dtype == tf.float32]
        tf1.train.Saver(var_list=stored_dtype).restore(sess, ckpt)
        loaded = tf.no_op()
        for v in model_variables():
            if v.dtype.base_dtype != tf.float32:
                with tf.control_dependencies([loaded]):
                    stored = tf.raw_ops.RestoreV2(prefix=ckpt, tensor_names=[v.op.name],
                                                  shape_and_slices=[''], dtypes=[tf.float32])
                    loaded = v.assign(tf.cast(stored[0], v.dtype.base_dtype)).op
        sess.run(loaded)
        return
    restore(sess, adapted.base)
    reader = tf.train.load_checkpoint(ckpt)
    for v in model_variables():
        name = v.op.name
        if reader.has_tensor(name):
            v.load(reader.get_tensor(name), sess)
        elif reader.has_tensor(f'{name[:-2]}/lora_a') and name.endswith('/w'):
            factors = {n: reader.get_tensor(n) for n in (f'{name[:-2]}/lora_a',
                                                         f'{name[:-2]}/lora_b')}
            base = sess.run(v).astype(np.float32)
            v.load(lora.merge({name: base}, factors, adapted.adapters)[name], sess)


def save(sess, directory, hparams, vocab_dir, variables=None):
    """Write a complete model directory in the release layout: weights (`variables`,
    default model_variables()), hparams, vocabulary."""
    os.makedirs(directory, exist_ok=True)
    saver = tf1.train.Saver(var_list=variables or model_variables(), save_relative_paths=True)
    saver.save(sess, os.path.join(directory, CHECKPOINT), write_meta_graph=False)
    with open(os.path.join(directory, HPARAMS), 'w', encoding='utf-8') as f:
        f.write(hparams.to_json())
    copy_vocabulary(vocab_dir, directory)


def init_random(directory, hparams, vocab_dir, seed=0):
    """Write `directory` with freshly initialised weights for `hparams` (GPT-2's own
    initialisation, as model.model creates the variables)."""
    with tf.Graph().as_default():
        tf1.set_random_seed(seed)
        model.model(hparams, tf1.placeholder(tf.int32, [1, None]))
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            save(sess, directory, hparams, vocab_dir)


def load_arrays(ckpt, hparams):
    """The release variables of a checkpoint as NumPy arrays (no graph needed); for
    adapters, their base's with the adapters merged in."""
    check_checkpoint(ckpt, hparams)
    reader = tf.train.load_checkpoint(ckpt)
    adapted = lora_checkpoint(ckpt)
    if adapted is None:
        return {name: reader.get_tensor(name) for name in variable_shapes(hparams)}
    stored = {name: reader.get_tensor(name) for name in stored_variables(ckpt)
              if name in variable_shapes(hparams) or lora.is_adapter(name)}
    return lora.merge(load_arrays(adapted.base, hparams), stored, adapted.adapters)


def save_arrays(directory, arrays, hparams, vocab_dir):
    """A model directory whose weights are `arrays` (release names -> NumPy arrays)."""
    with tf.Graph().as_default():
        feeds = {}
        for name, shape in variable_shapes(hparams).items():
            value = tf1.placeholder(tf.float32, shape)
            tf1.Variable(value, name=name)
            feeds[value] = arrays[name]
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer(), feeds)
            save(sess, directory, hparams, vocab_dir)


def copy_vocabulary(source, directory):
    """Each file appears whole or not at all (a copy is made aside, then renamed)."""
    if os.path.abspath(source) == os.path.abspath(directory):
        return
    for name in VOCAB_FILES:
        target = os.path.join(directory, name)
        shutil.copyfile(os.path.join(source, name), f'{target}.partial')
        os.replace(f'{target}.partial', target)
