#!/usr/bin/env python3
"""quant_real_ppl.py - llm-quantize against llama.cpp's quantizer on a real model, measured
by llama.cpp's perplexity: the figure in docs/quantize.md.

    python3 tests/model/quant_real_ppl.py LLM_QUANTIZE MODEL.gguf WORKDIR [CHUNKS]

MODEL may be quantized already: its tensors are first dequantized to f16 (with the gguf
package) into WORKDIR/source.f16.gguf, the common source of both quantizers. Then for
Q8_0 and Q4_K_M both quantizers write a file, and llama.cpp (llama-cpp-python 0.3.36)
measures each file's perplexity over CHUNKS (default 8) chunks of 512 tokens of the text
in tests/data/ppl/ (llama-perplexity's method: the second half of each chunk is scored).
"""
import math
import pathlib
import subprocess
import sys

import numpy as np
import gguf
from gguf import quants
import llama_cpp

ROOT = pathlib.Path(__file__).resolve().parents[2]
PPL_FILES = ["GPL-3.txt", "LGPL-2.1.txt", "GFDL-1.3.txt", "GPL-2.txt", "Apache-2.0.txt"]
FTYPES = {"Q8_0": 7, "Q4_K_M": 15}
N_CTX = 512


def to_f16(src, dst):
    r = gguf.GGUFReader(str(src))
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(str(dst), arch)
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name in ("general.architecture", "general.file_type",
                                                    "general.quantization_version"):
            continue
        vt = f.types[0]
        sub = f.types[1] if vt == gguf.GGUFValueType.ARRAY and len(f.types) > 1 else None
        w.add_key_value(f.name, f.contents(), vt, sub_type=sub)
    w.add_file_type(1)
    for t in r.tensors:
        shape = tuple(int(x) for x in reversed(t.shape))
        if t.tensor_type in (gguf.GGMLQuantizationType.F32,):
            data = np.array(t.data, dtype=np.float32).reshape(shape)
        else:
            data = quants.dequantize(t.data, t.tensor_type).reshape(shape)
            data = data.astype(np.float32 if len(shape) == 1 else np.float16)
        w.add_tensor(t.name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def perplexity(path, text, chunks):
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=N_CTX, n_batch=N_CTX, n_ubatch=N_CTX,
                          n_threads=2, n_threads_batch=2, logits_all=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
    bos = int(llama_cpp.llama_vocab_bos(vocab))
    toks = llm.tokenize(text.encode(), add_bos=add_bos, special=False)
    nll, count = 0.0, 0
    for c in range(min(chunks, len(toks) // N_CTX)):
        chunk = list(toks[c * N_CTX:(c + 1) * N_CTX])
        if add_bos:
            chunk[0] = bos
        llm.reset()
        llm.eval(chunk)
        logits = np.asarray(llm.scores[:N_CTX], dtype=np.float64)
        for i in range(N_CTX // 2, N_CTX - 1):
            row = logits[i]
            m = row.max()
            nll += -(row[chunk[i + 1]] - m - math.log(np.exp(row - m).sum()))
            count += 1
    llm.close()
    return math.exp(nll / count), count


def main():
    quantize, model, work = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    chunks = int(sys.argv[4]) if len(sys.argv) > 4 else 8
    work.mkdir(parents=True, exist_ok=True)
    text = "\n".join((ROOT / "tests" / "data" / "ppl" / f).read_text(encoding="utf-8")
                     for f in PPL_FILES)
    src = work / "source.f16.gguf"
    if not src.exists():
        to_f16(model, src)
    p, n = perplexity(src, text, chunks)
    print("source f16 (%s dequantized): perplexity %.4f over %d tokens" % (model.name, p, n),
          flush=True)
    for name, ft in FTYPES.items():
        ours, theirs = work / ("ours.%s.gguf" % name), work / ("llamacpp.%s.gguf" % name)
        subprocess.run([quantize, str(src), str(ours), name], check=True,
                       stderr=subprocess.DEVNULL)
        qp = llama_cpp.llama_model_quantize_default_params()
        qp.ftype = ft
        qp.nthread = 2
        assert llama_cpp.llama_model_quantize(str(src).encode(), str(theirs).encode(), qp) == 0
        po, _ = perplexity(ours, text, chunks)
        pt, _ = perplexity(theirs, text, chunks)
        print("%-7s llm-quantize %.4f (%d bytes)  llama.cpp %.4f (%d bytes)  ratio %.4f" %
              (name, po, ours.stat().st_size, pt, theirs.stat().st_size, po / pt), flush=True)


if __name__ == "__main__":
    main()
