"""Other formats, both ways where they go both ways: Hugging Face transformers
(huggingface.py), PEFT's LoRA adapters (lora_peft.py) and a TensorFlow SavedModel that
generates (savedmodel.py)."""
