"""GPT-2 itself: its shape (hparams.py), the forward pass in TensorFlow (model.py), the
release layout's names (release.py), model directories and their checkpoints
(model_dir.py), and LoRA's adapters (lora.py)."""
