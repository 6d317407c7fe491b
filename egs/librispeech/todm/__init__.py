"""TODM: Train Once Deploy Many, a supernet-based RNN-T recipe (arXiv 2309.01947).

Run the recipe from the repository root with ``./run.sh``; the modules here are the model
dir (icefall's ``zipformer/`` equivalent), importable as ``todm`` with
``PYTHONPATH=egs/librispeech`` (``path.sh`` sets it).
"""
