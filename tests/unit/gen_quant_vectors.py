#!/usr/bin/env python3
"""Writes tests/data/quant_vectors.bin: golden vectors for tests/unit/test_quants.c.

The expected values come from the `gguf` Python package (gguf.quants.dequantize and
gguf.quants.quantize), which mirrors ggml's reference code. Q8_1 and Q8_K are not in that
package; their dequantisation (d * q) is computed here with numpy in float32.

File layout (little-endian):
    magic   8 bytes  b"LLMQVEC1"
    count   u32      number of records
    records, each:
        kind    u32  0 = to_float (bytes are the input blocks, floats the expected output)
                     1 = from_float (floats are the input, bytes the expected blocks)
        dtype   u32  GGUF type id
        n       u32  number of elements
        nbytes  u32  size of the block data
        data    nbytes bytes
        floats  n float32

Run from the source root:  python3 tests/unit/gen_quant_vectors.py
"""
import os
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES
from gguf import quants

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "quant_vectors.bin")

rng = np.random.default_rng(20240611)


def rand_f16_scale(count):
    """Finite, sane half scales of either sign: magnitudes 1e-4 .. 10."""
    mag = 10.0 ** rng.uniform(-4, 1, size=count)
    sign = np.where(rng.random(count) < 0.5, -1.0, 1.0)
    return (mag * sign).astype(np.float16)


def put_f16(blocks, offset, values):
    blocks[:, offset:offset + 2] = values.astype(np.float16).view(np.uint8).reshape(-1, 2)


# (type, number of blocks, offsets of f16 scale fields)
SCALE_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0], T.Q8_1: [0, 2],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


# gguf-py still lists Q8_1 at 40 bytes (float d and s); ggml's block_q8_1 has been two halves
# and 32 quants (36 bytes) for a long time, and that is what GGUF files and this library use.
TYPE_SIZE = {T.Q8_1: 36}


def random_blocks(qtype, nblocks):
    type_size = TYPE_SIZE.get(qtype, GGML_QUANT_SIZES[qtype][1])
    blocks = rng.integers(0, 256, size=(nblocks, type_size), dtype=np.uint8)
    for off in SCALE_FIELDS.get(qtype, []):
        put_f16(blocks, off, rand_f16_scale(nblocks))
    if qtype == T.Q8_K:
        d = (rng.uniform(1e-4, 0.1, size=nblocks) * np.where(rng.random(nblocks) < 0.5, -1, 1))
        blocks[:, 0:4] = d.astype(np.float32).view(np.uint8).reshape(-1, 4)
    return blocks


def dequant_expected(qtype, blocks):
    if qtype == T.Q8_1:
        d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
        q = blocks[:, 4:36].copy().view(np.int8).astype(np.float32)
        return (q * d).reshape(-1)
    if qtype == T.Q8_K:
        d = blocks[:, 0:4].copy().view(np.float32)
        q = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
        return (q * d).reshape(-1)
    return quants.dequantize(blocks.reshape(-1), qtype).astype(np.float32).reshape(-1)


records = []


def add(kind, qtype, n, data, floats):
    data = np.ascontiguousarray(data, dtype=np.uint8).tobytes()
    floats = np.ascontiguousarray(floats, dtype=np.float32)
    assert floats.size == n
    records.append(struct.pack("<IIII", kind, int(qtype), n, len(data)) + data + floats.tobytes())


# ---- to_float: random blocks of every type --------------------------------------------
for qtype, nblocks in [(T.Q4_0, 12), (T.Q4_1, 12), (T.Q5_0, 12), (T.Q5_1, 12), (T.Q8_0, 12),
                       (T.Q8_1, 12), (T.Q2_K, 4), (T.Q3_K, 4), (T.Q4_K, 4), (T.Q5_K, 4),
                       (T.Q6_K, 4), (T.Q8_K, 3)]:
    block_size, _ = GGML_QUANT_SIZES[qtype]
    blocks = random_blocks(qtype, nblocks)
    add(0, qtype, nblocks * block_size, blocks, dequant_expected(qtype, blocks))

# F32: finite floats over a wide range of magnitudes
f = rng.standard_normal(256).astype(np.float32)
f = f * (10.0 ** rng.uniform(-30, 30, 256)).astype(np.float32)
add(0, T.F32, 256, f.view(np.uint8), quants.dequantize(f.view(np.uint8), T.F32))

# F16: all finite patterns are fair game, subnormals included
h = rng.integers(0, 65536, size=512, dtype=np.uint16)
h = h[(h & 0x7c00) != 0x7c00][:256]
h[:4] = [0x0001, 0x8001, 0x03ff, 0x0400]
add(0, T.F16, 256, h.view(np.uint8), quants.dequantize(h.view(np.uint8), T.F16))

# BF16: finite patterns
b = rng.integers(0, 65536, size=512, dtype=np.uint16)
b = b[(b & 0x7f80) != 0x7f80][:256]
add(0, T.BF16, 256, b.view(np.uint8), quants.dequantize(b.view(np.uint8), T.BF16))

# ---- from_float ---------------------------------------------------------------------


def activations(nblocks, block):
    """Gaussian rows with a different magnitude per block, plus some outliers."""
    x = rng.standard_normal((nblocks, block)) * (10.0 ** rng.uniform(-3, 2, size=(nblocks, 1)))
    x[rng.random(x.shape) < 0.02] *= 20
    return x.astype(np.float32)


for qtype in [T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1]:
    x = activations(24, 32)
    if qtype == T.Q8_0:
        x[5] = 0.0  # the all-zero block (d = 0) is a case of its own
        x[7, :] = np.round(x[7, :])  # integer-valued block
    x = x.reshape(-1)
    add(1, qtype, x.size, quants.quantize(x, qtype), x)

# F16 / BF16 rounding, including ties, subnormals, overflow and the specials
special = np.array([0.0, -0.0, 65504.0, 65519.0, 65520.0, -70000.0, 1e-8, -3e-8, 5.96e-8,
                    2.98e-8, 1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 6.1e-5, np.inf, -np.inf,
                    np.nan], dtype=np.float32)
x = np.concatenate([special, activations(15, 16).reshape(-1)]).astype(np.float32)
with np.errstate(over="ignore"):
    add(1, T.F16, x.size, x.astype(np.float16).view(np.uint8), x)
bspecial = np.array([1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, 3e38, -3.4e38, 1e-40, np.inf, np.nan],
                    dtype=np.float32)
x = activations(8, 32).reshape(-1)[:256 - bspecial.size]
x = np.concatenate([bspecial, x]).astype(np.float32)
add(1, T.BF16, x.size, quants.quantize(x, T.BF16), x)

blob = b"LLMQVEC1" + struct.pack("<I", len(records)) + b"".join(records)
os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, "wb") as fp:
    fp.write(blob)
print(f"wrote {OUT}: {len(records)} records, {len(blob)} bytes", file=sys.stderr)
