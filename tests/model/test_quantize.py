#!/usr/bin/env python3
"""test_quantize.py - llm-quantize against llama.cpp's quantizer on a tiny model.

    python3 tests/model/test_quantize.py LLM_QUANTIZE LLM WORKDIR

Builds a random-weight Llama-block model (f16, rows of 256 so that every k-quant applies,
written by gen_arch_models.build), quantizes it with llm-quantize and with llama.cpp
(llama-cpp-python 0.3.36, llama.cpp 0c1e570) to each preset in PRESETS, and checks:

  - our file loads in llama.cpp and in libllm (`llm info`);
  - every metadata pair of the source is in our file unchanged, general.file_type names
    the preset;
  - every tensor gets the type llama.cpp gives it (the preset's mix);
  - Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 tensors are byte-identical to llama.cpp's (same reference quantiser);
  - llama.cpp's perplexity on our file is within 1% of its perplexity on its own file. The
    text is 192 tokens sampled from the f16 model itself (seeded), so perplexity measures
    how well each quantization keeps the source model's predictions.

Needs python3 with numpy, gguf and llama_cpp; exits 77 (skip) when they are missing.
"""
import math
import pathlib
import subprocess
import sys

try:
    import numpy as np
    import gguf
    import llama_cpp
except ImportError as e:  # the reference tools are not installed: skip, do not pass
    print("skip: %s" % e)
    sys.exit(77)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import gen_arch_models as gam  # noqa: E402

PRESETS = ["Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q3_K_M", "Q6_K", "Q2_K", "Q5_1"]
LLAMA_FTYPE = {"Q4_0": 2, "Q8_0": 7, "Q5_1": 9, "Q2_K": 10, "Q3_K_M": 12, "Q4_K_M": 15,
               "Q5_K_M": 17, "Q6_K": 18}
MODEL = dict(name="quant-base", arch="llama", seed=301, n_embd=256, n_head=4, n_head_kv=1,
             n_ff=512, n_layer=8, tied=False, template="llama3.1.jinja", note="quantizer source")
N_TEXT = 192

failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


def open_llama(path, n_ctx=256):
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                           n_threads=2, n_threads_batch=2, logits_all=True, verbose=False)


def sample_text(path):
    llm = open_llama(path)
    rng = np.random.default_rng(7)
    toks = [1]
    for _ in range(N_TEXT - 1):
        llm.eval([toks[-1]])
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        toks.append(int(rng.choice(len(p), p=p)))
    llm.close()
    return toks


def perplexity(path, toks):
    llm = open_llama(path)
    llm.eval(toks)
    logits = np.array(llm.scores[:len(toks)], dtype=np.float64)
    llm.close()
    nll = 0.0
    for i in range(len(toks) - 1):
        row = logits[i]
        m = row.max()
        nll += -(row[toks[i + 1]] - m - math.log(np.exp(row - m).sum()))
    return math.exp(nll / (len(toks) - 1))


def read(path):
    r = gguf.GGUFReader(str(path))
    kv = {}
    for f in r.fields.values():
        if f.name.startswith("GGUF."):
            continue
        kv[f.name] = [bytes(p.tobytes()) for p in f.parts]
    tensors = {t.name: (int(t.tensor_type), bytes(t.data.tobytes())) for t in r.tensors}
    return kv, tensors


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    quantize, llm_tool, work = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
    work.mkdir(parents=True, exist_ok=True)
    src = work / "quant-base.f16.gguf"
    gam.build(MODEL, src)
    toks = sample_text(src)
    ppl_src = perplexity(src, toks)
    print("source f16: perplexity %.4f on %d sampled tokens" % (ppl_src, len(toks)))
    src_kv, _ = read(src)
    for preset in PRESETS:
        ours, theirs = work / ("ours.%s.gguf" % preset), work / ("llamacpp.%s.gguf" % preset)
        r = subprocess.run([quantize, "-t", "2", str(src), str(ours), preset],
                           capture_output=True, text=True)
        check(r.returncode == 0, "%s: llm-quantize exits 0 (%s)" % (preset, r.stderr.strip()[-200:]))
        if r.returncode != 0:
            continue
        qp = llama_cpp.llama_model_quantize_default_params()
        qp.ftype = LLAMA_FTYPE[preset]
        qp.nthread = 2
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(theirs).encode(), qp)
        check(rc == 0, "%s: llama.cpp quantizes the source" % preset)
        kv_o, t_o = read(ours)
        _, t_t = read(theirs)
        same_meta = all(kv_o.get(k) == v for k, v in src_kv.items()
                        if k not in ("general.file_type", "general.quantization_version"))
        check(same_meta, "%s: every source metadata pair kept" % preset)
        ft = kv_o.get("general.file_type")
        check(ft is not None and int.from_bytes(ft[-1], "little") == LLAMA_FTYPE[preset],
              "%s: general.file_type = %d" % (preset, LLAMA_FTYPE[preset]))
        diff = [n for n in t_t if t_o.get(n, (None,))[0] != t_t[n][0]]
        check(not diff, "%s: tensor types equal llama.cpp's (%d tensors%s)" %
              (preset, len(t_t), "; differ: " + ", ".join(
                  "%s %s/%s" % (n, t_o.get(n, (None,))[0], t_t[n][0]) for n in diff[:6])
               if diff else ""))
        exact = [n for n in t_t if t_t[n][0] in (2, 3, 6, 7, 8) and n in t_o]
        same = [n for n in exact if t_o[n][1] == t_t[n][1]]
        if exact:
            check(len(same) == len(exact), "%s: %d of %d Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 tensors byte-identical to "
                  "llama.cpp's" % (preset, len(same), len(exact)))
        r = subprocess.run([llm_tool, "info", str(ours)], capture_output=True, text=True)
        check(r.returncode == 0, "%s: llm info reads our file" % preset)
        p_o, p_t = perplexity(ours, toks), perplexity(theirs, toks)
        rel = p_o / p_t - 1.0
        check(rel <= 0.01, "%s: perplexity ours %.4f, llama.cpp's %.4f (%+.2f%%; source %.4f)" %
              (preset, p_o, p_t, 100 * rel, ppl_src))
    print("%d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
