"""Fine-tune GPT-2 with TensorFlow, sample from it and serve it.

    from gpt2tune import GPT2
    gpt2 = GPT2.load('models/124M', seed=1)
    print(gpt2.generate('Why did the chicken cross the road?|', length=40)[0])

Folders by what the code does: model/ (the forward pass, its shape, the release layout
and checkpoints, LoRA's arithmetic), data/ (the encoder, text and datasets), train/ (a
training run), generate/ (the decoding engine and the API), serve/ (the HTTP server),
export/ (Hugging Face, PEFT, SavedModel), commands/ (every command's arguments and
main). At the bottom: errors.py, resources.py and nvidia.py (the machine's facts),
cli.py (TensorFlow's quiet start, one line for a user's error), atomic_files.py.
Importing the package loads no TensorFlow; loading a model does.
"""


def __getattr__(name):
    # GPT2 on first use, so that `import gpt2tune` stays light.
    if name == 'GPT2':
        from gpt2tune.generate.generation import GPT2
        return GPT2
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
