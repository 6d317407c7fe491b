"""TODM: Train Once Deploy Many, a supernet-based RNN-T recipe (arXiv 2309.01947).

Run the recipe from the repository root with ``./run.sh``; the modules here are the model
dir (icefall's ``zipformer/`` equivalent), importable as ``todm`` with
``PYTHONPATH=egs/librispeech`` (``path.sh`` sets it).
"""

import os

# OpenMP's default (active) wait policy makes torch's worker threads spin at every barrier. When
# another process holds one of the cores, each parallel region then waits for a descheduled
# thread: a 2-thread training step ran 30-40x slower beside one busy process. Passive waiting
# costs a busy core only its share (bench/bench_threads.py). It must be set before torch starts
# OpenMP, i.e. before `import torch`; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
