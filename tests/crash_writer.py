"""A writer process for tests/test_crash_consolidation.py: open the store, say "start", consolidate, say "done".

    python tests/crash_writer.py STORE MODEL
"""

from __future__ import annotations

import dataclasses
import sys
import warnings

import torch
from conftest import FAST_LORA, FAST_SYNTH, FAST_TRAIN

from loramem import KnowledgeMemory

if __name__ == "__main__":
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    store, model = sys.argv[1], sys.argv[2]
    mem = KnowledgeMemory.open(store, model=model, lora=FAST_LORA,
                               synth=dataclasses.replace(FAST_SYNTH, context_mix=False), train=FAST_TRAIN)
    _ = mem.rt  # load the model before "start", so the kill lands in the consolidation itself
    print("start", flush=True)
    mem.consolidate()
    print("done", flush=True)
