#!/usr/bin/env python3
"""Writes tests/data/quant_vectors_iq.bin: random blocks of the i-quant types and their
dequantisation by the `gguf` Python package, for tests/unit/test_quants_iq.c.

Same layout as quant_vectors.bin (see gen_quant_vectors.py), to_float records only:
    magic b"LLMQVEC1", u32 count, then per record u32 kind (0), u32 dtype, u32 n,
    u32 nbytes, the blocks, n float32.

Run from the source root:  python3 tests/unit/gen_quant_vectors_iq.py
"""
import os
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES
from gguf import quants

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data",
                   "quant_vectors_iq.bin")
rng = np.random.default_rng(20261130)
TYPES = [T.IQ4_NL, T.IQ4_XS, T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ3_XXS, T.IQ3_S, T.IQ1_S]

records = []
for qtype in TYPES:
    block, size = GGML_QUANT_SIZES[qtype]
    nblocks = 24 if block == 32 else 6
    blocks = rng.integers(0, 256, size=(nblocks, size), dtype=np.uint8)
    # the f16 super-block scale is the first field of every one of these types
    mag = 10.0 ** rng.uniform(-4, 1, size=nblocks)
    d = (mag * np.where(rng.random(nblocks) < 0.5, -1.0, 1.0)).astype(np.float16)
    blocks[:, 0:2] = d.view(np.uint8).reshape(-1, 2)
    expected = quants.dequantize(blocks.reshape(-1), qtype).astype(np.float32).reshape(-1)
    n = nblocks * block
    records.append(struct.pack("<IIII", 0, int(qtype), n, blocks.size) + blocks.tobytes() +
                   expected.tobytes())

blob = b"LLMQVEC1" + struct.pack("<I", len(records)) + b"".join(records)
with open(OUT, "wb") as fp:
    fp.write(blob)
print(f"wrote {OUT}: {len(records)} records, {len(blob)} bytes", file=sys.stderr)
