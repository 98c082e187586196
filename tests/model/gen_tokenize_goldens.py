#!/usr/bin/env python3
"""Writes tests/data/tokenize_golden_<model>.bin: the token ids of every string in
tests/data/tokenize_corpus.json, as the reference tokenizers give them, for
tests/model/test_tokenize.c.

References, per model:
  llama.cpp (through llama-cpp-python, vocab only), three ways: plain text (flags 0), special
    tokens parsed (LLM_TOKENIZE_PARSE_SPECIAL), and BOS/EOS added as the model asks
    (ADD_SPECIAL | PARSE_SPECIAL). These are the goldens the C test must match exactly.
  hf: transformers' tokenizer converted from the GGUF (AutoTokenizer with gguf_file=), special
    tokens parsed and none added. The conversion only approximates some tokenizers: for
    SmolLM2 it misses the 'smollm' pre-tokenizer, so its pre-tokenizer is set to the one of
    SmolLM2's published tokenizer.json (digits split one by one, then GPT-2 byte level); for
    Gemma 3 it builds a Unigram model from the BPE scores, which is not Gemma's algorithm,
    so its ids are recorded but cannot be expected to agree.
  sentencepiece (Gemma 3): Google's SentencePiece BPE encoder run on a model proto built
    from the GGUF vocabulary (pieces, scores, types; byte fallback; no dummy prefix), plain
    text. An independent check of the SentencePiece path.

Needs: pip install llama-cpp-python "transformers<5" tokenizers sentencepiece protobuf gguf
(transformers 4.x reads GGUF metadata without torch once told torch is not needed for it;
5.x imports torch for GGUF). A reference that cannot be loaded is recorded as absent, with
the reason in the header.

tokenize_golden_pre.bin checks the pre-tokenizers that the real models do not use: SmolLM2's
vocabulary and merges, with tokenizer.ggml.pre set in turn to one name of each regex family
llama.cpp has (a vocabulary-only GGUF per name, written to a temporary folder), and the corpus
strings of at most 300 bytes tokenized by llama.cpp with special tokens parsed. Each ref is a
pre name there.

File format (little-endian): "LLMTOKG1"; u32 n, n bytes of JSON (versions, model, refs);
u32 n_refs, then per ref u32 flags, u32 n, name; u32 n_cases, then per case u32 n + the
text's UTF-8 bytes, and per ref i32 count (-1 = absent) + count i32 ids.

Usage: python3 tests/model/gen_tokenize_goldens.py [model_dir] [--pre-only]
"""
import json
import os
import struct
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
}
PARSE_SPECIAL, ADD_SPECIAL = 2, 1


def versions():
    from importlib import metadata

    v = {}
    for pkg in ("llama-cpp-python", "transformers", "tokenizers", "sentencepiece", "gguf"):
        try:
            v[pkg] = metadata.version(pkg)
        except Exception as e:  # noqa: BLE001 - only recorded
            v[pkg] = "unavailable: %s" % e
    try:
        import llama_cpp.llama_cpp as L
        v["llama.cpp"] = L.llama_version().decode()
    except Exception:  # noqa: BLE001
        pass
    return v


def llama_refs(path, corpus):
    from llama_cpp import Llama

    llm = Llama(path, vocab_only=True, verbose=False)
    plain, special, added = [], [], []
    for s in corpus:
        b = s.encode("utf-8", "surrogatepass")
        plain.append(llm.tokenize(b, add_bos=False, special=False))
        special.append(llm.tokenize(b, add_bos=False, special=True))
        added.append(llm.tokenize(b, add_bos=True, special=True))
    return plain, special, added


def hf_ref(model_dir, fname, name, corpus):
    try:
        import transformers.modeling_gguf_pytorch_utils as gu

        gu.is_torch_available = lambda: True  # only metadata is read; no tensors
    except Exception:  # noqa: BLE001 - transformers 5 has no such module
        pass
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=fname)
    note = "AutoTokenizer(gguf_file=) %s" % type(tok).__name__
    if name == "smollm2":
        from tokenizers import pre_tokenizers

        tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ])
        note += "; pre-tokenizer set to SmolLM2's tokenizer.json (Digits + ByteLevel)"
    if name == "gemma3":
        note += "; Unigram approximation of Gemma's BPE: not expected to agree"
    return [tok.encode(s, add_special_tokens=False) for s in corpus], note


def spm_ref(path, corpus):
    import gguf
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    r = gguf.GGUFReader(path)
    f = r.fields

    def arr(key):
        fld = f[key]
        return [fld.parts[i] for i in fld.data]

    pieces = [bytes(p).decode("utf-8") for p in arr("tokenizer.ggml.tokens")]
    scores = [float(p[0]) for p in arr("tokenizer.ggml.scores")]
    types = [int(p[0]) for p in arr("tokenizer.ggml.token_type")]
    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.vocab_size = len(pieces)
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.unk_id = int(f["tokenizer.ggml.unknown_token_id"].parts[-1][0])
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = False
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    for p, s, t in zip(pieces, scores, types):
        sp = m.pieces.add()
        sp.piece, sp.score = p, s
        sp.type = t if t in (1, 2, 3, 4, 5, 6) else 1
    proc = spm.SentencePieceProcessor(model_proto=m.SerializeToString())
    return [proc.encode(s) for s in corpus], "SentencePiece BPE from the GGUF vocabulary"


# One tokenizer.ggml.pre name per distinct regex list (and merge flag) of llama.cpp.
PRE_NAMES = [
    "default", "gpt-2", "llama-bpe", "dbrx", "qwen2", "qwen35", "deepseek-llm", "deepseek-coder",
    "deepseek-v3", "falcon", "poro-chat", "viking", "tekken", "chameleon", "gpt-4o",
    "granite-embed-multi-97m", "seed-coder", "bailingmoe", "exaone-moe", "jais-2", "minicpm5",
    "ufakzeka", "laguna", "chatglm-bpe",
]


def write_golden(dst, header, refs, corpus):
    hj = json.dumps(header, indent=1).encode()
    out = bytearray(b"LLMTOKG1")
    out += struct.pack("<I", len(hj)) + hj
    out += struct.pack("<I", len(refs))
    for rname, flags, _ in refs:
        out += struct.pack("<II", flags, len(rname)) + rname.encode()
    out += struct.pack("<I", len(corpus))
    for i, s in enumerate(corpus):
        b = s.encode("utf-8", "surrogatepass")
        out += struct.pack("<I", len(b)) + b
        for _, _, lists in refs:
            if lists is None:
                out += struct.pack("<i", -1)
            else:
                out += struct.pack("<i", len(lists[i]))
                out += struct.pack("<%di" % len(lists[i]), *lists[i])
    open(dst, "wb").write(out)
    return len(out)


def pre_goldens(model_dir, corpus):
    import tempfile

    import gguf
    from llama_cpp import Llama

    src = os.path.join(model_dir, MODELS["smollm2"])
    r = gguf.GGUFReader(src)
    corpus = [s for s in corpus if len(s.encode("utf-8", "surrogatepass")) <= 300]
    refs = []
    with tempfile.TemporaryDirectory() as tmp:
        for pre in PRE_NAMES:
            path = os.path.join(tmp, "pre.gguf")
            w = gguf.GGUFWriter(path, arch=r.fields["general.architecture"].contents())
            for k, f in r.fields.items():
                if k.startswith("GGUF.") or k == "general.architecture":
                    continue
                v = pre if k == "tokenizer.ggml.pre" else f.contents()
                if f.types[0] == gguf.GGUFValueType.ARRAY:
                    w.add_key_value(k, v, f.types[0], sub_type=f.types[-1])
                else:
                    w.add_key_value(k, v, f.types[0])
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
            w.close()
            llm = Llama(path, vocab_only=True, verbose=False)
            refs.append((pre, PARSE_SPECIAL,
                         [llm.tokenize(s.encode("utf-8", "surrogatepass"), add_bos=False, special=True)
                          for s in corpus]))
            del llm
    header = {
        "model": MODELS["smollm2"] + " with tokenizer.ggml.pre replaced by each ref's name",
        "model_size": os.path.getsize(src),
        "corpus": "tests/data/tokenize_corpus.json, strings of at most 300 bytes",
        "cases": len(corpus),
        "versions": versions(),
        "generated_by": "tests/model/gen_tokenize_goldens.py",
    }
    dst = os.path.join(ROOT, "tests/data/tokenize_golden_pre.bin")
    n = write_golden(dst, header, refs, corpus)
    print("%s: %d cases x %d pre-tokenizers, %d bytes" % (dst, len(corpus), len(refs), n))


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    model_dir = args[0] if args else os.path.expanduser("~/.cache/libllm/models")
    corpus = json.load(open(os.path.join(ROOT, "tests/data/tokenize_corpus.json")))
    if "--pre-only" in sys.argv:
        pre_goldens(model_dir, corpus)
        return
    for name, fname in MODELS.items():
        path = os.path.join(model_dir, fname)
        t0 = time.time()
        plain, special, added = llama_refs(path, corpus)
        refs = [("llama.cpp", 0, plain), ("llama.cpp", PARSE_SPECIAL, special),
                ("llama.cpp", ADD_SPECIAL | PARSE_SPECIAL, added)]
        notes = {}
        try:
            ids, notes["hf"] = hf_ref(model_dir, fname, name, corpus)
        except Exception as e:  # noqa: BLE001 - recorded as absent
            ids, notes["hf"] = None, "failed to load: %s" % e
        refs.append(("hf", PARSE_SPECIAL, ids))
        if name == "gemma3":
            try:
                ids, notes["sentencepiece"] = spm_ref(path, corpus)
            except Exception as e:  # noqa: BLE001
                ids, notes["sentencepiece"] = None, "failed: %s" % e
            refs.append(("sentencepiece", 0, ids))
        header = {
            "model": fname,
            "model_size": os.path.getsize(path),
            "corpus": "tests/data/tokenize_corpus.json",
            "cases": len(corpus),
            "versions": versions(),
            "notes": notes,
            "generated_by": "tests/model/gen_tokenize_goldens.py",
        }
        dst = os.path.join(ROOT, "tests/data/tokenize_golden_%s.bin" % name)
        size = write_golden(dst, header, refs, corpus)
        agree = {}
        for rname, flags, lists in refs[3:]:
            base = special if flags & PARSE_SPECIAL else plain
            agree[rname] = None if lists is None else sum(a == b for a, b in zip(lists, base))
        print("%s: %d cases, %d bytes, %.0f s; agreement with llama.cpp: %s"
              % (dst, len(corpus), size, time.time() - t0, agree))
    pre_goldens(model_dir, corpus)


if __name__ == "__main__":
    main()
