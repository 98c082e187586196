#!/usr/bin/env python3
"""gen_goldens.py - make the llama.cpp reference data for libllm's model tests.

Run from the source root:

    pip install llama-cpp-python numpy      # the reference (llama.cpp, CPU build)
    python3 tests/model/gen_goldens.py [--models DIR] [--only greedy|ppl] [--model NAME]
    python3 tests/model/gen_goldens.py --noise [--model NAME]   # measure, write nothing

It writes, for each model in MODELS (files looked up in DIR, default $LLM_MODEL_DIR or
~/.cache/libllm/models):

  tests/data/golden/<stem>.greedy.txt   8 prompts: prompt ids, 64 greedy ids, the top-2 logits
                                        of every generated step, and the top-1000 (id, logit)
                                        of the last prompt position
  tests/data/golden/<stem>.ppl.txt      llama-perplexity's method at n_ctx 512 on the text in
                                        tests/data/ppl/: the token ids, per-chunk NLL sums, ppl

Both files are plain text: whitespace-separated words, '#' starts a comment line. The C
tests read them with tests/model/golden.h; the layout is written out in write_greedy() and
write_ppl() below. Floats are printed with 9 significant digits, which round-trips float32.

What the reference is (and why):
  - Llama(n_ctx, n_batch=512, n_ubatch=512, n_threads=2, flash_attn=False): the non-flash
    attention path (f16 KV cache, f32 softmax) is the one libllm's numerics follow.
  - Greedy decoding takes the argmax of the raw logits here, with no sampler, so no
    penalty or sampler detail of llama-cpp-python enters the golden ids. Ties go to the
    lowest id (numpy argmax), as in the C test.
  - The prompt is decoded as one batch with logits for its last token only, then one token
    per call, on a cache cleared before each prompt: what tests/model/test_generate.c does.
  - Perplexity follows llama.cpp's tools/perplexity: tokenize the whole text with the
    model's special tokens added (BOS when the model asks for it) and special-token text not
    parsed; cut it into chunks of n_ctx tokens; when the model adds BOS the first token of
    every chunk is replaced by BOS; each chunk runs on a fresh cache; only the second half
    is scored: the logits at position i predict token i+1 for i in [n_ctx/2, n_ctx-1).
    NLL is accumulated in double from a max-shifted log-softmax. ppl = exp(sum NLL / count).

Takes about 25 minutes of CPU time on 2 cores, most of it the perplexity runs.

--noise measures how far llama.cpp moves from its own goldens when only its numerics change
(flash attention on; the prompt fed one token at a time, which changes its matmul kernels):
the statistics the tolerances of test_logits.c and test_generate.c are sized from.
"""

import argparse
import ctypes
import datetime
import hashlib
import json
import os
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN_DIR = ROOT / "tests" / "data" / "golden"
PPL_DIR = ROOT / "tests" / "data" / "ppl"
# The perplexity text: these files joined with "\n" (see tests/data/ppl/README.md).
PPL_FILES = ["GPL-3.txt", "LGPL-2.1.txt", "GFDL-1.3.txt", "GPL-2.txt", "Apache-2.0.txt"]

N_GEN = 64          # greedy tokens per prompt
TOP_K_SAVED = 1000  # (id, logit) pairs kept for the last prompt position
PPL_N_CTX = 512
PPL_MAX_CHUNKS = 40
SEED = 1234
N_THREADS = 2

# Prompts shared by both models: plain text of varied kinds. Each model adds one prompt in
# its own chat format (below), giving 8 per model.
COMMON_PROMPTS = [
    ("story", "Once upon a time, in a small village at the edge of a great forest, there lived"),
    ("fact", "Question: What is the capital of France?\nAnswer:"),
    ("code", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"),
    ("list", "Things to pack for a weekend camping trip:\n1. A tent\n2."),
    ("numbers", "1, 1, 2, 3, 5, 8, 13, 21, 34,"),
    ("french", "La tour Eiffel, construite pour l'Exposition universelle de 1889, est"),
    # A longer prompt (well over one 16-token KV block, several hundred characters) so the
    # prompt batch spans many cache blocks and attention reads a long history.
    ("long",
     "The history of the printing press begins in the fifteenth century, when Johannes "
     "Gutenberg, a goldsmith from Mainz, combined several existing technologies into a "
     "single practical system. Movable type had been used in East Asia for centuries, and "
     "screw presses were common in the production of wine and olive oil. Gutenberg's "
     "contribution was a hand mould that allowed metal type to be cast quickly and "
     "precisely, an oil-based ink that adhered to metal, and a press adapted for printing. "
     "Within fifty years, printing shops had spread to more than two hundred cities across "
     "Europe, and millions of books had been produced. The consequences of this change were "
     "profound, because"),
]

MODELS = [
    {
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        # The file's own template with one user message and the generation prompt.
        "chat": ("chat",
                 "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                 "Hugging Face<|im_end|>\n<|im_start|>user\nGive me three tips for staying "
                 "healthy.<|im_end|>\n<|im_start|>assistant\n"),
    },
    {
        "file": "gemma-3-270m-q4_k_m.gguf",
        # Gemma 3's turn format (the file carries no template); BOS comes from the tokenizer.
        "chat": ("chat",
                 "<start_of_turn>user\nGive me three tips for staying healthy.<end_of_turn>\n"
                 "<start_of_turn>model\n"),
    },
]


def fmt_f(x):
    """A float32 value printed so that it reads back to the same float32."""
    return format(float(np.float32(x)), ".9g")


def reference_info(llama_cpp):
    """Versions of the reference: the Python package and, through ggml, the llama.cpp commit."""
    info = {"llama_cpp_python": getattr(llama_cpp, "__version__", "unknown")}
    libdir = pathlib.Path(llama_cpp.__file__).parent / "lib"
    for name in ("libggml-base.so", "libggml-base.dylib", "ggml-base.dll"):
        p = libdir / name
        if not p.exists():
            continue
        try:
            lib = ctypes.CDLL(str(p))
            for fn in ("ggml_version", "ggml_commit"):
                f = getattr(lib, fn)
                f.restype = ctypes.c_char_p
                f.argtypes = []
                info[fn] = f().decode()
        except (OSError, AttributeError):
            pass
        break
    try:
        import importlib.metadata as md
        info["dist_version"] = md.version("llama_cpp_python")
    except Exception:  # noqa: BLE001 - metadata is optional information only
        pass
    return info


def header_lines(kind, model_file, info):
    return [
        f"# libllm model-test golden ({kind}), written by tests/model/gen_goldens.py",
        f"# reference: llama-cpp-python {info.get('llama_cpp_python')}, "
        f"ggml {info.get('ggml_version', '?')} (llama.cpp vendored commit "
        f"{info.get('ggml_commit', 'unknown')})",
        f"# model: {model_file}",
        f"# settings: n_batch 512, n_ubatch 512, n_threads {N_THREADS}, flash_attn off, "
        f"seed {SEED}",
        f"# generated: {datetime.date.today().isoformat()}",
    ]


def open_model(llama_cpp, path, n_ctx, logits_all):
    return llama_cpp.Llama(
        model_path=str(path), n_ctx=n_ctx, n_batch=512, n_ubatch=512,
        n_threads=N_THREADS, n_threads_batch=N_THREADS, flash_attn=False,
        seed=SEED, logits_all=logits_all, verbose=False)


def clear_cache(llama_cpp, llm):
    """A fresh KV cache: clear llama.cpp's memory and the wrapper's token count."""
    mem = llama_cpp.llama_get_memory(llm._ctx.ctx)
    llama_cpp.llama_memory_clear(mem, True)
    llm.reset()


def last_logits(llama_cpp, llm, n_vocab):
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(n_vocab,)).astype(np.float32).copy()


def top_k(logits, k):
    """The k largest logits, largest first; equal values in increasing id order."""
    idx = np.argsort(-logits, kind="stable")[:k]
    return idx, logits[idx]


def gen_greedy(llama_cpp, model, path, info):
    llm = open_model(llama_cpp, path, n_ctx=1024, logits_all=False)
    n_vocab = llm.n_vocab()
    prompts = COMMON_PROMPTS[:4] + [model["chat"]] + COMMON_PROMPTS[4:]
    out = header_lines("greedy", model["file"], info)
    out.append("# layout: prompt NAME / n_prompt N ids... / n_gen N ids... / top2 (N lines:")
    out.append("#   best and second-best logit at each generated step) / topk K (K lines: id")
    out.append("#   logit, the last prompt position's K largest logits, largest first) / end")
    out += ["libllm-golden-greedy 1", f"model {model['file']}", f"n_vocab {n_vocab}",
            f"n_prompts {len(prompts)}"]
    for name, text in prompts:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        clear_cache(llama_cpp, llm)
        llm.eval(ids)  # one batch (the prompts are < n_batch), logits for the last token
        logits = last_logits(llama_cpp, llm, n_vocab)
        kid, kval = top_k(logits, TOP_K_SAVED)
        gen, top2 = [], []
        for step in range(N_GEN):
            t2, v2 = top_k(logits, 2)
            tok = int(np.argmax(logits))
            assert tok == int(t2[0])
            gen.append(tok)
            top2.append((v2[0], v2[1]))
            if step + 1 < N_GEN:
                llm.eval([tok])
                logits = last_logits(llama_cpp, llm, n_vocab)
        text_out = llm.detokenize(gen).decode("utf-8", errors="replace")
        print(f"  {name}: {len(ids)} prompt tokens -> {text_out[:70]!r}", file=sys.stderr)
        out.append(f"prompt {name}")
        out.append("# text: " + json.dumps(text))
        out.append("# output: " + json.dumps(text_out))
        out.append(f"n_prompt {len(ids)}")
        out.append(" ".join(str(t) for t in ids))
        out.append(f"n_gen {N_GEN}")
        out.append(" ".join(str(t) for t in gen))
        out.append("top2")
        out += [f"{fmt_f(a)} {fmt_f(b)}" for a, b in top2]
        out.append(f"topk {TOP_K_SAVED}")
        out += [f"{int(i)} {fmt_f(v)}" for i, v in zip(kid, kval)]
        out.append("end")
    del llm
    return out


def ppl_text():
    return "\n".join((PPL_DIR / f).read_text(encoding="utf-8") for f in PPL_FILES)


def gen_ppl(llama_cpp, model, path, info):
    llm = open_model(llama_cpp, path, n_ctx=PPL_N_CTX, logits_all=True)
    n_vocab = llm.n_vocab()
    vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
    bos = int(llama_cpp.llama_vocab_bos(vocab))
    text = ppl_text()
    # As llama-perplexity: add_special=true, parse_special=false.
    all_ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    n_chunks = min(len(all_ids) // PPL_N_CTX, PPL_MAX_CHUNKS)
    if n_chunks < PPL_MAX_CHUNKS:
        sys.exit(f"{model['file']}: the text has {len(all_ids)} tokens, fewer than "
                 f"{PPL_MAX_CHUNKS} chunks of {PPL_N_CTX}")
    ids = all_ids[: n_chunks * PPL_N_CTX]
    first = PPL_N_CTX // 2
    chunk_nll, chunk_cnt = [], []
    for c in range(n_chunks):
        chunk = list(ids[c * PPL_N_CTX: (c + 1) * PPL_N_CTX])
        if add_bos:
            chunk[0] = bos
        clear_cache(llama_cpp, llm)
        llm.eval(chunk)
        # Rows [first, n_ctx-1) of this chunk's logits; the wrapper keeps one chunk only.
        rows = np.asarray(llm.scores[first: PPL_N_CTX - 1], dtype=np.float64)
        targets = np.asarray(chunk[first + 1: PPL_N_CTX])
        mx = rows.max(axis=1)
        lse = mx + np.log(np.exp(rows - mx[:, None]).sum(axis=1))
        nll = lse - rows[np.arange(len(targets)), targets]
        chunk_nll.append(float(nll.sum()))
        chunk_cnt.append(len(targets))
        run_ppl = np.exp(sum(chunk_nll) / sum(chunk_cnt))
        print(f"  chunk {c + 1}/{n_chunks}: ppl so far {run_ppl:.4f}", file=sys.stderr)
    ppl = float(np.exp(sum(chunk_nll) / sum(chunk_cnt)))
    out = header_lines("perplexity", model["file"], info)
    out.append("# text: tests/data/ppl/ " + " + ".join(PPL_FILES) + " joined with \\n, sha256 "
               + hashlib.sha256(text.encode("utf-8")).hexdigest())
    out.append(f"# the text has {len(all_ids)} tokens; the first n_chunks*n_ctx are used")
    out.append("# layout: tokens holds the text's ids as tokenized (BOS not yet put in place of")
    out.append("#   each chunk's first token: the test does that when add_bos is 1); chunk lines:")
    out.append("#   index, NLL sum over the chunk's scored tokens, number scored")
    out += ["libllm-golden-ppl 1", f"model {model['file']}", f"n_vocab {n_vocab}",
            f"n_ctx {PPL_N_CTX}", f"add_bos {int(add_bos)}", f"bos {bos}",
            f"n_chunks {n_chunks}", f"n_tokens {len(ids)}", "tokens"]
    for i in range(0, len(ids), 16):
        out.append(" ".join(str(t) for t in ids[i: i + 16]))
    for c in range(n_chunks):
        out.append(f"chunk {c} {chunk_nll[c]:.17g} {chunk_cnt[c]}")
    out.append(f"ppl {ppl:.17g}")
    out.append("end")
    print(f"  ppl {ppl:.6f} over {n_chunks} chunks ({len(all_ids)} tokens in the text)",
          file=sys.stderr)
    del llm
    return out


def read_greedy_golden(stem):
    """{prompt name: (generated ids, [(top1, top2) per step])} from a greedy golden file."""
    lines = (GOLDEN_DIR / f"{stem}.greedy.txt").read_text().split("\n")
    out, i = {}, 0
    while i < len(lines):
        if lines[i].startswith("prompt "):
            name = lines[i].split()[1]
            j = lines.index("top2", i)
            gen = [int(v) for v in lines[j - 1].split()]
            top2 = [tuple(float(v) for v in lines[j + 1 + k].split()) for k in range(len(gen))]
            out[name] = (gen, top2)
            i = j
        i += 1
    return out


def measure_noise(llama_cpp, model, path):
    """llama.cpp against its own goldens under other numerics; prints one line per run."""
    gold = read_greedy_golden(model["file"].removesuffix(".gguf"))
    base = open_model(llama_cpp, path, n_ctx=1024, logits_all=False)
    flash = llama_cpp.Llama(model_path=str(path), n_ctx=1024, n_batch=512, n_ubatch=512,
                            n_threads=N_THREADS, n_threads_batch=N_THREADS, flash_attn=True,
                            seed=SEED, verbose=False)
    n_vocab = base.n_vocab()
    prompts = COMMON_PROMPTS[:4] + [model["chat"]] + COMMON_PROMPTS[4:]
    for name, text in prompts:
        ids = base.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        gen, top2 = gold[name]
        clear_cache(llama_cpp, base)
        base.eval(ids)
        ref = last_logits(llama_cpp, base, n_vocab)
        gid, gl = top_k(ref, TOP_K_SAVED)
        rank = {int(t): k for k, t in enumerate(gid)}
        for label, llm, one_by_one in (("flash_attn", flash, False), ("one_by_one", base, True)):
            clear_cache(llama_cpp, llm)
            for t in ([[t] for t in ids] if one_by_one else [ids]):
                llm.eval(t)
            x = last_logits(llama_cpp, llm, n_vocab)
            d = np.abs(x[gid] - gl)
            ours10 = [int(t) for t in top_k(x, 10)[0]]
            swap = 0.0
            for t in ours10:
                if rank.get(t, TOP_K_SAVED) >= 10:
                    swap = max(swap, gl[9] - gl[rank[t]] if t in rank else np.inf)
            for t in gid[:10]:
                if int(t) not in ours10:
                    swap = max(swap, gl[rank[int(t)]] - gl[9])
            # Teacher-forced on the golden ids: argmax agreement, the golden id's margin below
            # the best logit, and the first difference with the golden top-2 gap there.
            agree, margin, first = 0, 0.0, None
            for k, tok in enumerate(gen):
                y = x if k == 0 else last_logits(llama_cpp, llm, n_vocab)
                best = int(np.argmax(y))
                agree += best == tok
                margin = max(margin, float(y[best] - y[tok]))
                if best != tok and first is None:
                    first = k
                if k + 1 < len(gen):
                    llm.eval([tok])
            gap = f"{top2[first][0] - top2[first][1]:.4f}" if first is not None else "-"
            print(f"{model['file'][:14]} {name:8s} {label:10s} logits max {d.max():.4f} mean "
                  f"{d.mean():.4f} top10-swap {swap:.4f} "
                  f"top1 {'same' if ours10[0] == gid[0] else 'DIFF'}"
                  f" | greedy equal {first if first is not None else len(gen):2d}/{len(gen)} "
                  f"(golden gap there {gap}) agree {agree:2d}/{len(gen)} margin {margin:.4f}",
                  flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_dir = os.environ.get("LLM_MODEL_DIR") or os.path.expanduser("~/.cache/libllm/models")
    ap.add_argument("--models", default=default_dir, help="folder with the GGUF files")
    ap.add_argument("--only", choices=["greedy", "ppl"], help="make one kind of golden only")
    ap.add_argument("--model", help="only the model whose file name contains this")
    ap.add_argument("--noise", action="store_true",
                    help="measure llama.cpp against its own goldens under other numerics")
    args = ap.parse_args()

    import llama_cpp  # imported late so --help works without it
    info = reference_info(llama_cpp)
    print(f"reference: {info}", file=sys.stderr)
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    for model in MODELS:
        if args.model and args.model not in model["file"]:
            continue
        path = pathlib.Path(args.models) / model["file"]
        if not path.exists():
            sys.exit(f"missing model file {path}")
        stem = model["file"].removesuffix(".gguf")
        if args.noise:
            measure_noise(llama_cpp, model, path)
            continue
        if args.only in (None, "greedy"):
            print(f"{model['file']}: greedy", file=sys.stderr)
            lines = gen_greedy(llama_cpp, model, path, info)
            (GOLDEN_DIR / f"{stem}.greedy.txt").write_text("\n".join(lines) + "\n")
        if args.only in (None, "ppl"):
            print(f"{model['file']}: perplexity", file=sys.stderr)
            lines = gen_ppl(llama_cpp, model, path, info)
            (GOLDEN_DIR / f"{stem}.ppl.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
