"""Every command: its arguments and its main, nothing else. The console scripts of
pyproject.toml are console.py's functions; the walkthrough's scripts (train.py, encode.py,
prepare_jokes.py at the top, src/interactive_conditional_samples.py and
src/generate_unconditional_samples.py) run the same mains through console.run."""
