#!/usr/bin/env python3
"""Writes the seed corpus for fuzz_gguf into tests/fuzz/corpus/gguf/.

The seeds are small valid GGUF files made with the `gguf` package (the reference writer of
llama.cpp), so the fuzzer starts from inputs that reach deep into the parser: every value
type, string and numeric arrays, several tensor types and shapes, a non-default alignment,
and a header-only file. Run it again after changing it; the files are committed.
"""
import os
import sys

import numpy as np
import gguf

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "gguf")
Q = gguf.GGMLQuantizationType


def write(name, arch, fill, alignment=None):
    path = os.path.join(OUT, name)
    w = gguf.GGUFWriter(path, arch)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    fill(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{name}: {os.path.getsize(path)} bytes")


def every_type(w):
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -7)
    w.add_uint16("t.u16", 65535)
    w.add_int16("t.i16", -300)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -123456)
    w.add_float32("t.f32", 1e-5)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "hello")
    w.add_uint64("t.u64", 1 << 40)
    w.add_int64("t.i64", -5)
    w.add_float64("t.f64", 0.25)
    w.add_array("t.arr_i32", [1, -2, 3])
    w.add_array("t.arr_f32", [0.5, 1.5])
    w.add_array("t.arr_str", ["a", "", "\u2581b"])
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_tensor("a.weight", np.arange(8, dtype=np.float32))


def tiny_model(w):
    rng = np.random.default_rng(1)
    w.add_block_count(1)
    w.add_embedding_length(32)
    w.add_head_count(2)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["<s>", "</s>", "a", "b", "ab"])
    w.add_token_types([3, 3, 1, 1, 1])
    w.add_token_merges(["a b"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    w.add_tensor("token_embd.weight", rng.standard_normal((5, 32)).astype(np.float16))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(32, dtype=np.float32))
    # Pre-quantized bytes: q8_0 rows of 32 elements are 34 bytes each.
    q8 = rng.integers(0, 255, size=(4, 34), dtype=np.uint8)
    w.add_tensor("blk.0.attn_q.weight", q8, raw_dtype=Q.Q8_0)
    q4k = rng.integers(0, 255, size=(2, 144), dtype=np.uint8)
    w.add_tensor("blk.0.ffn_up.weight", q4k, raw_dtype=Q.Q4_K)
    w.add_tensor("blk.0.x4d", np.zeros((2, 1, 3, 4), dtype=np.float32))


def sentencepiece(w):
    w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "<s>", "</s>", "\u2581a", "<0x0A>"])
    w.add_token_scores([0.0, 0.0, 0.0, -1.5, -2.0])
    w.add_add_bos_token(True)
    w.add_tensor("output_norm.weight", np.ones(16, dtype=np.float32))


def header_only(w):
    w.add_name("empty")


def main():
    os.makedirs(OUT, exist_ok=True)
    write("every_type.gguf", "llama", every_type)
    write("tiny_model.gguf", "llama", tiny_model)
    write("align64.gguf", "gemma3", sentencepiece, alignment=64)
    write("header_only.gguf", "llama", header_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
