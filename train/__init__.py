"""edgevae.train: PyTorch training of an MLP VAE on MNIST-format data.

Run `python -m edgevae.train --help`. The model, the loss terms and the checkpoint format live
in `model.py`, `config.py` and `checkpoint.py`; nothing here runs at import.
"""
