#!/usr/bin/env python3
"""gen_arch_models.py - tiny random-weight GGUF files, one per supported architecture, and
llama.cpp's logits on them: the data of tests/model/test_archs.c.

Run from the source root:

    python3 tests/model/gen_arch_models.py            # write models and goldens
    python3 tests/model/gen_arch_models.py --check    # rebuild the models, compare bytes

It writes, for each entry of ARCHS:

  tests/data/arch/<name>.gguf        the model (f16 matrices, f32 vectors; < 200 KB)
  tests/data/arch/<name>.logits.bin  llama.cpp's logits for every position of SEQ_LEN tokens

Every model is generated from a fixed seed, so a rerun writes the same bytes. The models
carry the hyper-parameters and tensor names llama.cpp's loader expects for the architecture,
a SentencePiece-style vocabulary of N_VOCAB tokens (3 specials, 256 byte tokens, the rest
control tokens and plain pieces), and the chat template of a model family (TEMPLATES).

The golden file layout (little endian):
    char     magic[8]   "LLMARCH1"
    uint32   n_tokens, n_vocab
    int32    tokens[n_tokens]
    float32  logits[n_tokens][n_vocab]   position i: the logits after tokens[0..i]
    float32  noise                        max |logit difference| of llama.cpp against itself
                                          (flash attention on vs off), the basis of the
                                          test's tolerance

Reference: llama-cpp-python 0.3.36 (llama.cpp 0c1e570), CPU, n_threads 2, one batch of
all tokens with logits for each, flash attention off (f16 KV cache).
"""

import argparse
import ctypes
import pathlib
import struct
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "tests" / "data" / "arch"
N_VOCAB = 288
SEQ_LEN = 40
MAGIC = b"LLMARCH1"

# Each model carries the chat template of a model family (tests/data/templates/, whose
# jinja2 renderings over 30 conversations are tests/data/chat_goldens.txt), with that
# family's BOS and EOS texts as tokens 1 and 2: tests/unit/test_chat.c renders the goldens
# through these models.
TEMPLATE_DIR = ROOT / "tests" / "data" / "templates"
TEMPLATES = {  # template file: (bos text, eos text)
    "mistral.jinja": ("<s>", "</s>"),
    "mistral-v3.jinja": ("<s>", "</s>"),
    "llama3.1.jinja": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3.2.jinja": ("<|begin_of_text|>", "<|eot_id|>"),
    "qwen2.5.jinja": ("<|endoftext|>", "<|im_end|>"),
    "qwen3.jinja": ("<|endoftext|>", "<|im_end|>"),
    "chatml.jinja": ("<|endoftext|>", "<|im_end|>"),
    "phi3.jinja": ("<s>", "<|endoftext|>"),
    "gemma2.jinja": ("<bos>", "<eos>"),
}

# name, GGUF architecture, seed, shape, and what the entry exercises
ARCHS = [
    dict(name="llama", arch="llama", seed=101, n_embd=64, n_head=4, n_head_kv=1, n_ff=96,
         n_layer=2, tied=False, template="mistral.jinja",
         note="Llama/Mistral block, GQA 4:1, NORM rope, untied output"),
    dict(name="llama3", arch="llama", seed=102, n_embd=64, n_head=4, n_head_kv=2, n_ff=96,
         n_layer=2, rope_base=500000.0, llama3_rope=True, template="llama3.1.jinja",
         note="rope scaling 'llama3' as the rope_freqs factors the converter writes"),
    dict(name="llama-linear", arch="llama", seed=103, n_embd=64, n_head=4, n_head_kv=4,
         n_ff=96, n_layer=2, rope_linear=4.0, template="llama3.2.jinja",
         note="rope scaling 'linear' (factor 4)"),
    dict(name="qwen2", arch="qwen2", seed=104, n_embd=64, n_head=4, n_head_kv=2, n_ff=96,
         n_layer=2, bias=True, rope_base=1000000.0, eps=1e-6, template="qwen2.5.jinja",
         note="q/k/v biases, NEOX rope, tied output"),
    dict(name="qwen3", arch="qwen3", seed=105, n_embd=64, n_head=4, n_head_kv=2, n_ff=96,
         n_layer=2, head_dim=24, qk_norm=True, rope_base=1000000.0, eps=1e-6,
         template="qwen3.jinja", note="per-head q/k RMS norms, head_dim != n_embd/n_head"),
    dict(name="phi3", arch="phi3", seed=106, n_embd=64, n_head=4, n_head_kv=4, n_ff=64,
         n_layer=2, fused=True, longrope=True, tied=False, template="phi3.jinja",
         note="fused attn_qkv and gate+up, NEOX rope, longrope short factors + attn factor"),
    dict(name="gemma2", arch="gemma2", seed=107, n_embd=64, n_head=4, n_head_kv=2, n_ff=48,
         n_layer=3, head_dim=16, gemma2=True, window=8, eps=1e-6, template="gemma2.jinja",
         note="soft-capped attention and logits, sliding window 8 on even layers, post norms"),
    dict(name="mixtral", arch="llama", seed=108, n_embd=64, n_head=4, n_head_kv=2, n_ff=32,
         n_layer=2, n_expert=4, n_expert_used=2, template="mistral-v3.jinja",
         note="Mixtral: llama with 4 experts, top-2 routing"),
    dict(name="qwen3moe", arch="qwen3moe", seed=109, n_embd=64, n_head=4, n_head_kv=2,
         n_ff=96, n_ff_exp=16, n_layer=2, n_expert=6, n_expert_used=3, qk_norm=True,
         head_dim=16, rope_base=1000000.0, eps=1e-6, template="chatml.jinja",
         note="Qwen3-MoE: 6 experts of 16 rows, top-3, q/k norms"),
]


def vocab(bos="<s>", eos="</s>"):
    toks, scores, types = ["<unk>", bos, eos], [0.0, 0.0, 0.0], [2, 3, 3]
    for b in range(256):
        toks.append("<0x%02X>" % b)
        scores.append(0.0)
        types.append(6)
    # control tokens of the families' chat formats
    for c in ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<start_of_turn>", "<end_of_turn>",
              "<|end|>", "<|user|>", "<|assistant|>", "<|system|>", "<|eot_id|>",
              "<|start_header_id|>", "<|end_header_id|>", "<s>", "</s>"]:
        toks.append(c if c not in (bos, eos) else "<|unused%d|>" % len(toks))
        scores.append(0.0)
        types.append(3)
    words = ["\u2581the", "\u2581a", "\u2581of", "\u2581and", "\u2581to", "\u2581in", "\u2581is",
             "\u2581it", "\u2581that", "\u2581for", "\u2581on", "\u2581with", "\u2581as", "er",
             "in", "on", "an", "re", "at", "en", "ed", "es", "or", "te", "\u2581s", "\u2581t",
             "th", "nd", "\u2581w"]
    for i, w in enumerate(words[:N_VOCAB - len(toks)]):
        toks.append(w)
        scores.append(-float(i + 1))
        types.append(1)
    assert len(toks) == N_VOCAB, len(toks)
    return toks, scores, types


def llama3_factors(n_rot, base):
    # The "llama3" scaling: low frequencies divided by the factor, high ones kept, a
    # smooth ramp between (the converter stores these per-frequency divisors).
    factor, low, high, old_ctx = 8.0, 1.0, 4.0, 8192
    low_wl, high_wl = old_ctx / low, old_ctx / high
    out = []
    for i in range(0, n_rot, 2):
        freq = 1.0 / (base ** (i / n_rot))
        wl = 2 * np.pi / freq
        if wl < high_wl:
            out.append(1.0)
        elif wl > low_wl:
            out.append(factor)
        else:
            smooth = (old_ctx / wl - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def build(cfg, path):
    import gguf
    rng = np.random.default_rng(cfg["seed"])
    arch, E = cfg["arch"], cfg["n_embd"]
    H, HKV = cfg["n_head"], cfg["n_head_kv"]
    D = cfg.get("head_dim", E // H)
    F, L = cfg["n_ff"], cfg["n_layer"]
    NE, FE = cfg.get("n_expert", 0), cfg.get("n_ff_exp", F)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("synthetic-" + cfg["name"])
    w.add_context_length(256)
    w.add_embedding_length(E)
    w.add_block_count(L)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(HKV)
    w.add_rope_freq_base(cfg.get("rope_base", 10000.0))
    w.add_layer_norm_rms_eps(cfg.get("eps", 1e-5))
    if "head_dim" in cfg:
        w.add_key_length(D)
        w.add_value_length(D)
    w.add_rope_dimension_count(D)
    if NE:
        w.add_expert_count(NE)
        w.add_expert_used_count(cfg["n_expert_used"])
        if "n_ff_exp" in cfg:
            w.add_expert_feed_forward_length(FE)
    if "rope_linear" in cfg:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(cfg["rope_linear"])
    if cfg.get("longrope"):
        w.add_rope_scaling_attn_factors(1.1902380714238083)
        w.add_rope_scaling_orig_ctx_len(4096)
    if cfg.get("gemma2"):
        w.add_sliding_window(cfg["window"])
        w.add_attn_logit_softcapping(50.0)
        w.add_final_logit_softcapping(30.0)
    bos, eos = TEMPLATES[cfg["template"]]
    toks, scores, types = vocab(bos, eos)
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template((TEMPLATE_DIR / cfg["template"]).read_text(encoding="utf-8"))

    def mat(rows, cols, scale=1.0):  # GGUF [cols, rows]: rows of `cols` elements
        return (rng.standard_normal((rows, cols)) * scale / np.sqrt(cols)).astype(np.float16)

    def vec(n, mean=1.0, sd=0.1):
        return (mean + sd * rng.standard_normal(n)).astype(np.float32)

    w.add_tensor("token_embd.weight", (rng.standard_normal((N_VOCAB, E)) * 0.5)
                 .astype(np.float16))
    w.add_tensor("output_norm.weight", vec(E))
    if not cfg.get("tied", True):
        w.add_tensor("output.weight", mat(N_VOCAB, E, 2.0))
    if cfg.get("llama3_rope"):
        w.add_tensor("rope_freqs.weight", llama3_factors(D, cfg.get("rope_base", 10000.0)))
    if cfg.get("longrope"):
        w.add_tensor("rope_factors_long.weight", vec(D // 2, 4.0, 1.0))
        w.add_tensor("rope_factors_short.weight", vec(D // 2, 1.2, 0.1))
    for il in range(L):
        p = "blk.%d." % il
        w.add_tensor(p + "attn_norm.weight", vec(E))
        if cfg.get("fused"):
            w.add_tensor(p + "attn_qkv.weight", mat(H * D + 2 * HKV * D, E))
        else:
            w.add_tensor(p + "attn_q.weight", mat(H * D, E))
            w.add_tensor(p + "attn_k.weight", mat(HKV * D, E))
            w.add_tensor(p + "attn_v.weight", mat(HKV * D, E))
        if cfg.get("bias"):
            w.add_tensor(p + "attn_q.bias", vec(H * D, 0.0, 0.5))
            w.add_tensor(p + "attn_k.bias", vec(HKV * D, 0.0, 0.5))
            w.add_tensor(p + "attn_v.bias", vec(HKV * D, 0.0, 0.5))
        if cfg.get("qk_norm"):
            w.add_tensor(p + "attn_q_norm.weight", vec(D))
            w.add_tensor(p + "attn_k_norm.weight", vec(D))
        w.add_tensor(p + "attn_output.weight", mat(E, H * D))
        if cfg.get("gemma2"):
            w.add_tensor(p + "post_attention_norm.weight", vec(E))
            w.add_tensor(p + "post_ffw_norm.weight", vec(E))
        w.add_tensor(p + "ffn_norm.weight", vec(E))
        if NE:
            w.add_tensor(p + "ffn_gate_inp.weight",
                         (rng.standard_normal((NE, E)) * 2.0 / np.sqrt(E)).astype(np.float32))
            w.add_tensor(p + "ffn_gate_exps.weight", np.stack([mat(FE, E) for _ in range(NE)]))
            w.add_tensor(p + "ffn_up_exps.weight", np.stack([mat(FE, E) for _ in range(NE)]))
            w.add_tensor(p + "ffn_down_exps.weight", np.stack([mat(E, FE) for _ in range(NE)]))
        elif cfg.get("fused"):
            w.add_tensor(p + "ffn_up.weight", mat(2 * F, E))
            w.add_tensor(p + "ffn_down.weight", mat(E, F))
        else:
            w.add_tensor(p + "ffn_gate.weight", mat(F, E))
            w.add_tensor(p + "ffn_up.weight", mat(F, E))
            w.add_tensor(p + "ffn_down.weight", mat(E, F))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def reference_logits(path, tokens, flash):
    import llama_cpp
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_batch=64, n_ubatch=64,
                          n_threads=2, n_threads_batch=2, logits_all=True, flash_attn=flash,
                          verbose=False)
    llm.eval(tokens)
    out = np.array(llm.scores[:len(tokens)], dtype=np.float32)
    llm.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true",
                    help="rebuild the models in memory and compare with the committed files")
    ap.add_argument("--only", help="one entry of ARCHS by name")
    args = ap.parse_args()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for cfg in ARCHS:
        if args.only and cfg["name"] != args.only:
            continue
        path = OUT_DIR / (cfg["name"] + ".gguf")
        if args.check:
            tmp = OUT_DIR / (cfg["name"] + ".check.gguf")
            build(cfg, tmp)
            same = tmp.read_bytes() == path.read_bytes()
            tmp.unlink()
            print("%-14s %s" % (cfg["name"], "same bytes" if same else "DIFFERS"))
            continue
        build(cfg, path)
        rng = np.random.default_rng(cfg["seed"] + 1000)
        tokens = [1] + [int(t) for t in rng.integers(3, N_VOCAB, SEQ_LEN - 1)]
        ref = reference_logits(path, tokens, False)
        noise = float(np.max(np.abs(reference_logits(path, tokens, True) - ref)))
        assert path.stat().st_size < 200 * 1024, "model too large to commit"
        with open(OUT_DIR / (cfg["name"] + ".logits.bin"), "wb") as f:
            f.write(MAGIC)
            f.write(struct.pack("<II", len(tokens), N_VOCAB))
            f.write(np.array(tokens, dtype="<i4").tobytes())
            f.write(ref.astype("<f4").tobytes())
            f.write(struct.pack("<f", noise))
        print("%-14s %7d bytes  |logit| max %.3f  llama.cpp self-noise %.2e  (%s)" %
              (cfg["name"], path.stat().st_size, float(np.max(np.abs(ref))), noise,
               cfg["note"]))


if __name__ == "__main__":
    sys.exit(main())
