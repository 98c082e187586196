/*
 * llm.h - the public API of libllm, an embeddable LLM inference library.
 *
 * This file is the whole API: what is not declared here is not API and may change
 * at any time. It compiles as C99, C11 and C++ (extern "C"), warning-free.
 *
 * Conventions
 *  - Every call that can fail returns llm_status (LLM_OK == 0) or a count, where a
 *    negative count is documented per call. No call aborts or exits the process.
 *  - Handles are opaque. Every llm_*_free(NULL) is a no-op.
 *  - Params structs begin with `size_t size` and are filled by llm_*_params_init(),
 *    which sets size = sizeof in the caller's translation unit. The library reads only
 *    the fields the caller's size covers and defaults the rest, so fields can be
 *    appended without breaking old binaries. A zero numeric field means "default".
 *  - The last error message of a call on a context is kept by that context
 *    (llm_context_last_error); calls without a context keep theirs in a thread-local
 *    buffer read by llm_last_error().
 *  - Strings are UTF-8, `const char *`. Counts are fixed-width integers.
 *  - Buffers the caller provides use the two-call pattern: a call with too small a
 *    buffer returns the negated size it needs.
 */
#ifndef LLM_H
#define LLM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(LLM_BUILDING_DLL)
#define LLM_API __declspec(dllexport)
#elif defined(_WIN32) && !defined(LLM_STATIC)
#define LLM_API __declspec(dllimport)
#elif defined(__GNUC__)
#define LLM_API __attribute__((visibility("default")))
#else
#define LLM_API
#endif

#define LLM_VERSION_MAJOR 1
#define LLM_VERSION_MINOR 0
#define LLM_VERSION_PATCH 0
/** The version as one comparable number: major*10000 + minor*100 + patch. */
#define LLM_VERSION_NUMBER (LLM_VERSION_MAJOR * 10000 + LLM_VERSION_MINOR * 100 + LLM_VERSION_PATCH)

/* ------------------------------------------------------------------------------ */
/* Status codes and errors                                                         */
/* ------------------------------------------------------------------------------ */

/** Result of a call. Values are permanent; new ones are appended. */
typedef enum llm_status {
    LLM_OK = 0,
    LLM_ERR_INVALID_ARG = 1,   /**< a parameter is NULL, out of range or inconsistent */
    LLM_ERR_NO_MEMORY = 2,     /**< an allocation failed */
    LLM_ERR_IO = 3,            /**< a file could not be opened, mapped or read */
    LLM_ERR_INVALID_MODEL = 4, /**< the model file is malformed */
    LLM_ERR_UNSUPPORTED = 5,   /**< valid input that this build cannot run (type, architecture) */
    LLM_ERR_CANCELLED = 6,     /**< a callback asked to stop */
    LLM_ERR_CONTEXT_FULL = 7,  /**< the KV cache has no room for the batch */
    LLM_ERR_BUFFER_TOO_SMALL = 8, /**< a caller buffer is too small */
    LLM_ERR_TEMPLATE = 9,      /**< a chat template failed to parse or run */
    LLM_ERR_BACKEND = 10,      /**< a compute backend reported an error */
    LLM_ERR_INTERNAL = 11,     /**< an internal invariant failed; a bug */
    LLM_ERR_NOT_FOUND = 12     /**< a named item (key, token, sequence) does not exist */
} llm_status;

/**
 * Static English text for a status, e.g. "invalid argument".
 * Thread-safe: yes. Returns a string that lives forever; unknown values give "unknown status".
 * Since: 1.0
 */
LLM_API const char *llm_status_str(llm_status s);

/**
 * The message of the last failed call made on this thread that had no context
 * (model load, tokenize, template application, sampler creation).
 * Thread-safe: yes (per thread). Returns "" when there was none; valid until the next
 * failing call on this thread.
 * Since: 1.0
 */
LLM_API const char *llm_last_error(void);

/* ------------------------------------------------------------------------------ */
/* Version and build                                                               */
/* ------------------------------------------------------------------------------ */

/** Run-time twin of LLM_VERSION_NUMBER. Thread-safe: yes. Since: 1.0 */
LLM_API uint32_t llm_version_number(void);

/** Run-time version string, "1.0.0". Thread-safe: yes. Since: 1.0 */
LLM_API const char *llm_version_string(void);

/**
 * One line saying what this build holds: version, backends, CPU features compiled in
 * and detected, e.g. "libllm 1.0.0 backends=cpu cpu=avx2,fma,f16c".
 * Thread-safe: yes. Returns a static string.
 * Since: 1.0
 */
LLM_API const char *llm_build_info(void);

/* ------------------------------------------------------------------------------ */
/* Logging                                                                         */
/* ------------------------------------------------------------------------------ */

typedef enum llm_log_level {
    LLM_LOG_ERROR = 0,
    LLM_LOG_WARN = 1,
    LLM_LOG_INFO = 2,
    LLM_LOG_DEBUG = 3
} llm_log_level;

/** A log sink. `msg` is one line without a trailing newline, valid during the call. */
typedef void (*llm_log_fn)(llm_log_level level, const char *msg, void *user);

/**
 * Sets the process-wide log sink and the most verbose level passed to it.
 * fn == NULL restores the default sink (stderr, warnings and errors only).
 * Thread-safe: yes.
 * Since: 1.0
 */
LLM_API void llm_log_set(llm_log_fn fn, llm_log_level max_level, void *user);

/* ------------------------------------------------------------------------------ */
/* Model                                                                           */
/* ------------------------------------------------------------------------------ */

typedef struct llm_model llm_model;
typedef struct llm_context llm_context;
typedef struct llm_sampler llm_sampler;
typedef int32_t llm_token;

/**
 * Load progress: `progress` goes from 0 to 1. Return non-zero to cancel the load
 * (llm_model_load then returns LLM_ERR_CANCELLED).
 */
typedef int (*llm_progress_fn)(float progress, void *user);

/** Parameters for llm_model_load. Fill with llm_model_params_init(). */
typedef struct llm_model_params {
    size_t size;                 /**< sizeof(llm_model_params), set by init */
    llm_progress_fn progress;    /**< optional */
    void *progress_user;         /**< passed to progress */
    int32_t n_threads;           /**< threads used to prepare weights; 0 = default */
    uint32_t flags;              /**< LLM_MODEL_* flags */
    /** Compute backend: "auto" (NULL or "" too) takes the CUDA module when it loads and
     *  its device exists, else the CPU, and logs the choice at info level; "cpu"; "cuda"
     *  (an error when the module or the device is missing). Borrowed for the call.
     *  Since: 1.1 */
    const char *backend;
    int32_t device;              /**< GPU index for GPU backends (0 = first). Since: 1.1 */
} llm_model_params;

/** Do not mmap the file; read it into memory instead. */
#define LLM_MODEL_NO_MMAP 1u

/** Fills *p with defaults and sets p->size. */
static inline void llm_model_params_init(llm_model_params *p)
{
    memset(p, 0, sizeof *p);
    p->size = sizeof *p;
}

/**
 * Loads a GGUF model from a file.
 * @param path   file path (UTF-8)
 * @param params NULL for defaults; borrowed for the call
 * @param[out] out the model on success, NULL on failure; free with llm_model_free()
 * Thread-safe: yes (independent loads). Errors: LLM_ERR_INVALID_ARG, LLM_ERR_IO,
 * LLM_ERR_INVALID_MODEL, LLM_ERR_UNSUPPORTED, LLM_ERR_NO_MEMORY, LLM_ERR_CANCELLED;
 * the message is in llm_last_error().
 * Since: 1.0
 */
LLM_API llm_status llm_model_load(const char *path, const llm_model_params *params,
                                  llm_model **out);

/** Frees a model. Every context made from it must be freed first. NULL is a no-op. Since: 1.0 */
LLM_API void llm_model_free(llm_model *model);

/** Architecture name from the file, e.g. "llama", "gemma3". Lives as long as model. Since: 1.0 */
LLM_API const char *llm_model_architecture(const llm_model *model);

/** Model name from the file's metadata ("" if none). Lives as long as model. Since: 1.0 */
LLM_API const char *llm_model_name(const llm_model *model);

/** Total number of weight parameters. Since: 1.0 */
LLM_API uint64_t llm_model_n_params(const llm_model *model);

/** Number of tokens in the vocabulary. Since: 1.0 */
LLM_API int32_t llm_model_n_vocab(const llm_model *model);

/** Context length the model was trained for. Since: 1.0 */
LLM_API int32_t llm_model_n_ctx_train(const llm_model *model);

/** Embedding width. Since: 1.0 */
LLM_API int32_t llm_model_n_embd(const llm_model *model);

/** Number of layers. Since: 1.0 */
LLM_API int32_t llm_model_n_layer(const llm_model *model);

/**
 * Name of the backend the model runs on: "cpu" or "cuda" (what "auto" chose).
 * Thread-safe: yes. Lives as long as model; "" for NULL.
 * Since: 1.1
 */
LLM_API const char *llm_model_backend(const llm_model *model);

/**
 * The chat template: the one stored in the file, or, for known architectures whose
 * file carries none, the family's standard template. NULL if neither exists.
 * Lives as long as model.
 * Since: 1.0
 */
LLM_API const char *llm_model_chat_template(const llm_model *model);

/** Size of the model file in bytes (0 for NULL). Since: 1.1 */
LLM_API uint64_t llm_model_file_size(const llm_model *model);

/** Number of tensors in the model file (0 for NULL). Since: 1.1 */
LLM_API int32_t llm_model_n_tensors(const llm_model *model);

/**
 * Tensor i of the file (in file order): its type name ("q4_K", "f32" ...; static text),
 * element count and size in bytes. Any out parameter may be NULL.
 * Errors: LLM_ERR_INVALID_ARG (NULL model, i out of range). Since: 1.1
 */
LLM_API llm_status llm_model_tensor_info(const llm_model *model, int32_t i,
                                         const char **type_name, uint64_t *n_elements,
                                         uint64_t *n_bytes);

/**
 * Reads a metadata value from the file as text (numbers are formatted, arrays are
 * summarised as "[array of N]").
 * @param[out] buf receives a NUL-terminated string; may be NULL when cap is 0
 * Returns the length of the text without NUL when it fit, -(length+1) when cap was too
 * small, or INT32_MIN when the key does not exist.
 * Since: 1.0
 */
LLM_API int32_t llm_model_meta(const llm_model *model, const char *key, char *buf, int32_t cap);

/** Special tokens of the vocabulary; -1 when the model has none. Since: 1.0 */
typedef enum llm_special_token {
    LLM_TOKEN_BOS = 0,
    LLM_TOKEN_EOS = 1,
    LLM_TOKEN_EOT = 2, /**< end of turn, e.g. <|im_end|>, <end_of_turn> */
    LLM_TOKEN_UNK = 3,
    LLM_TOKEN_PAD = 4
} llm_special_token;

/** Id of a special token, or -1. Since: 1.0 */
LLM_API llm_token llm_model_token(const llm_model *model, llm_special_token which);

/** Whether generation should stop at this token (EOS, EOT and other end-of-generation tokens). Since: 1.0 */
LLM_API int llm_model_token_is_eog(const llm_model *model, llm_token token);

/* ------------------------------------------------------------------------------ */
/* Tokenizer                                                                       */
/* ------------------------------------------------------------------------------ */

/** Prepend BOS if the model asks for it (tokenizer.ggml.add_bos_token). */
#define LLM_TOKENIZE_ADD_SPECIAL 1u
/** Recognise special-token text such as "<|im_start|>" in the input. */
#define LLM_TOKENIZE_PARSE_SPECIAL 2u

/**
 * Converts text to tokens.
 * @param text  UTF-8, `len` bytes (need not be NUL-terminated)
 * @param[out] out receives up to cap tokens; may be NULL when cap is 0
 * @param flags LLM_TOKENIZE_* bits
 * Returns the number of tokens, or -(needed) when cap was too small (nothing useful was
 * written), or INT32_MIN on invalid arguments (message in llm_last_error()).
 * Thread-safe: yes.
 * Since: 1.0
 */
LLM_API int32_t llm_tokenize(const llm_model *model, const char *text, size_t len,
                             llm_token *out, int32_t cap, uint32_t flags);

/** Render special (control) tokens as their text instead of skipping them. */
#define LLM_DETOKENIZE_RENDER_SPECIAL 1u

/**
 * The bytes one token stands for. Returns the byte count written, -(needed) if cap was
 * too small, INT32_MIN for an invalid token. Output is not NUL-terminated and may be a
 * partial UTF-8 sequence (byte tokens). Control tokens give 0 bytes unless
 * LLM_DETOKENIZE_RENDER_SPECIAL is set.
 * Thread-safe: yes.
 * Since: 1.0
 */
LLM_API int32_t llm_token_to_piece(const llm_model *model, llm_token token, char *buf,
                                   int32_t cap, uint32_t flags);

/**
 * Converts tokens to text (the concatenation of their pieces; SentencePiece word marks
 * become spaces). Returns the byte count written (a NUL is added when room remains),
 * -(needed) if cap was too small, INT32_MIN for an invalid token.
 * Thread-safe: yes.
 * Since: 1.0
 */
LLM_API int32_t llm_detokenize(const llm_model *model, const llm_token *tokens, int32_t n,
                               char *buf, int32_t cap, uint32_t flags);

/* ------------------------------------------------------------------------------ */
/* Chat templates                                                                  */
/* ------------------------------------------------------------------------------ */

/** One chat message. Both strings are borrowed for the call. */
typedef struct llm_chat_message {
    const char *role;    /**< "system", "user", "assistant", ... */
    const char *content; /**< UTF-8 text */
} llm_chat_message;

/**
 * Renders messages with a chat template (Jinja).
 * @param tmpl   template text; NULL uses llm_model_chat_template(model)
 * @param add_generation_prompt non-zero to end with the assistant turn's opening
 * @param[out] buf receives NUL-terminated text
 * Returns the length without NUL, -(length+1) if cap was too small, INT32_MIN on error
 * (LLM_ERR_TEMPLATE text in llm_last_error()).
 * Thread-safe: yes.
 * Since: 1.0
 */
LLM_API int32_t llm_chat_apply(const llm_model *model, const char *tmpl,
                               const llm_chat_message *msgs, int32_t n_msgs,
                               int add_generation_prompt, char *buf, int32_t cap);

/* ------------------------------------------------------------------------------ */
/* Context and low-level decoding                                                  */
/* ------------------------------------------------------------------------------ */

/** Parameters for llm_context_create. Fill with llm_context_params_init(). */
typedef struct llm_context_params {
    size_t size;         /**< sizeof(llm_context_params), set by init */
    int32_t n_ctx;       /**< KV cache capacity in tokens over all sequences; 0 = min(4096, train) */
    int32_t n_batch;     /**< most tokens in one llm_decode call; 0 = 512 */
    int32_t n_seq_max;   /**< most distinct sequence ids; 0 = 1 */
    int32_t n_threads;   /**< compute threads; 0 = one per core */
    int32_t block_size;  /**< KV cache block size in tokens; 0 = 16 */
    /* since 1.1 */
    int32_t kv_type;     /**< llm_kv_type of the cache; 0 = LLM_KV_F16 */
    uint32_t flags;      /**< LLM_CONTEXT_* flags */
} llm_context_params;

/** Element type of the KV cache. q8_0 halves its memory (head width a multiple of 32). */
typedef enum llm_kv_type {
    LLM_KV_F16 = 0,
    LLM_KV_BF16 = 1,
    LLM_KV_Q8_0 = 2
} llm_kv_type;

/** Requests never reuse cached prompt blocks (prefix caching off). */
#define LLM_CONTEXT_NO_PREFIX_CACHE 1u

static inline void llm_context_params_init(llm_context_params *p)
{
    memset(p, 0, sizeof *p);
    p->size = sizeof *p;
}

/**
 * Creates a context (KV cache and scratch memory) for a model.
 * @param model borrowed; must outlive the context
 * @param params NULL for defaults
 * @param[out] out the context; free with llm_context_free()
 * Thread-safe: yes. Errors: LLM_ERR_INVALID_ARG, LLM_ERR_NO_MEMORY (message in llm_last_error()).
 * Since: 1.0
 */
LLM_API llm_status llm_context_create(llm_model *model, const llm_context_params *params,
                                      llm_context **out);

/** Frees a context. NULL is a no-op. Since: 1.0 */
LLM_API void llm_context_free(llm_context *ctx);

/** Message of the last failed call on ctx ("" if none). Valid until the next call on ctx. Since: 1.0 */
LLM_API const char *llm_context_last_error(const llm_context *ctx);

/** The KV cache capacity in tokens. Since: 1.0 */
LLM_API int32_t llm_context_n_ctx(const llm_context *ctx);

/** Changes the number of compute threads (>= 1). Thread-safe: no. Since: 1.0 */
LLM_API llm_status llm_context_set_threads(llm_context *ctx, int32_t n_threads);

/**
 * A batch of tokens for llm_decode. All arrays are borrowed for the call and have
 * n_tokens entries. Within one sequence, positions must continue that sequence's cache:
 * the first token of seq s in a batch has position llm_kv_seq_length(ctx, s) and each next
 * one the following position.
 */
typedef struct llm_batch {
    size_t size;                /**< sizeof(llm_batch) */
    int32_t n_tokens;
    const llm_token *tokens;
    const int32_t *positions;   /**< NULL: continue each sequence's cache in order */
    const int32_t *seq_ids;     /**< NULL: all tokens belong to sequence 0 */
    const int8_t *logits;       /**< non-zero where logits are wanted; NULL: last token only */
} llm_batch;

static inline void llm_batch_init(llm_batch *b)
{
    memset(b, 0, sizeof *b);
    b->size = sizeof *b;
}

/**
 * Runs the model over a batch, appending every token to its sequence's KV cache, and
 * computes logits for the tokens that asked for them.
 * On failure the cache is left as it was before the call.
 * Thread-safe: no (one thread at a time per context).
 * Errors: LLM_ERR_INVALID_ARG (bad token, position or sequence id), LLM_ERR_CONTEXT_FULL,
 * LLM_ERR_NO_MEMORY, LLM_ERR_BACKEND; message in llm_context_last_error().
 * Since: 1.0
 */
LLM_API llm_status llm_decode(llm_context *ctx, const llm_batch *batch);

/**
 * Logits (n_vocab floats) of the i-th token of the last batch that asked for them,
 * counting only those tokens (i = -1 means the last one). NULL if there is no such row.
 * Valid until the next llm_decode on ctx.
 * Since: 1.0
 */
LLM_API const float *llm_context_logits(llm_context *ctx, int32_t i);

/** Number of tokens the sequence holds in the cache (its next position). Since: 1.0 */
LLM_API int32_t llm_kv_seq_length(const llm_context *ctx, int32_t seq_id);

/**
 * Removes the cached tokens of a sequence at positions >= p0 (rewinds it to length p0).
 * seq_id = -1 applies to every sequence. p0 = 0 clears the sequence.
 * Errors: LLM_ERR_INVALID_ARG.
 * Since: 1.0
 */
LLM_API llm_status llm_kv_seq_truncate(llm_context *ctx, int32_t seq_id, int32_t p0);

/** Clears the whole KV cache. Since: 1.0 */
LLM_API void llm_kv_clear(llm_context *ctx);

/* ------------------------------------------------------------------------------ */
/* Sampling                                                                        */
/* ------------------------------------------------------------------------------ */

/** Sampler parameters. A chain applies, in order: penalties, top-k, top-p, min-p,
 * temperature, then draws (or takes the argmax when temperature <= 0). */
typedef struct llm_sampler_params {
    size_t size;              /**< sizeof(llm_sampler_params), set by init */
    float temperature;        /**< <= 0: greedy; init sets 0.8 */
    int32_t top_k;            /**< <= 0: off; init sets 40 */
    float top_p;              /**< >= 1: off; init sets 0.95 */
    float min_p;              /**< <= 0: off; init sets 0.05 */
    float repeat_penalty;     /**< 1: off; init sets 1 */
    float presence_penalty;   /**< 0: off */
    float frequency_penalty;  /**< 0: off */
    int32_t penalty_last_n;   /**< tokens looked back for penalties; init sets 64 */
    uint64_t seed;            /**< same seed, same output */
} llm_sampler_params;

static inline void llm_sampler_params_init(llm_sampler_params *p)
{
    memset(p, 0, sizeof *p);
    p->size = sizeof *p;
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->penalty_last_n = 64;
}

/**
 * Creates a sampler.
 * @param model borrowed; gives the vocabulary size; must outlive the sampler
 * @param params NULL for defaults
 * Errors: LLM_ERR_INVALID_ARG (a NaN or negative value where none is allowed), LLM_ERR_NO_MEMORY.
 * Since: 1.0
 */
LLM_API llm_status llm_sampler_create(const llm_model *model, const llm_sampler_params *params,
                                      llm_sampler **out);

/** Frees a sampler. NULL is a no-op. Since: 1.0 */
LLM_API void llm_sampler_free(llm_sampler *s);

/**
 * Picks the next token from n_vocab logits (borrowed, not modified) and records it in the
 * sampler's history (for penalties). Returns the token, or -1 on invalid arguments.
 * Thread-safe: no (per sampler).
 * Since: 1.0
 */
LLM_API llm_token llm_sampler_sample(llm_sampler *s, const float *logits);

/** Records a token in the history without sampling (e.g. prompt tokens). Since: 1.0 */
LLM_API void llm_sampler_accept(llm_sampler *s, llm_token token);

/** Clears the history and re-seeds the generator with the params' seed. Since: 1.0 */
LLM_API void llm_sampler_reset(llm_sampler *s);

/* ------------------------------------------------------------------------------ */
/* Request engine (since 1.1)                                                      */
/* ------------------------------------------------------------------------------ */
/*
 * Many generations share one context: requests are submitted, and each llm_step runs
 * one scheduler iteration that decodes one batch mixing the running requests' next
 * tokens with chunks of waiting prompts (continuous batching, chunked prefill) over the
 * paged KV cache. Full prompt blocks are cached by content, so requests that share a
 * prefix (a system prompt) compute it once. When the cache runs out, the most recently
 * admitted request of the lowest priority is preempted and later recomputed; its output
 * is unchanged by that. Results arrive as events, polled or through a callback.
 *
 * A context serves either llm_decode or requests: once a request was submitted,
 * llm_decode and llm_kv_* return LLM_ERR_INVALID_ARG until every request finished (and,
 * with a worker, until the worker is stopped); submitting, or starting a worker, while
 * llm_decode's sequences hold tokens is refused likewise (llm_kv_clear first).
 * The context's n_seq_max bounds the completions running at once, n_batch the tokens of
 * one step, n_ctx the KV cache all requests share.
 *
 * Threads: without a worker, every call on the context comes from one thread at a time.
 * With llm_context_start_worker, a thread of the context's own runs the steps, and
 * llm_request_submit, llm_request_cancel, llm_poll and llm_engine_stats may be called
 * from any thread at any time; none of them waits for a step to finish.
 */

typedef uint64_t llm_request_id;

/** Most alternatives an event reports per token. */
#define LLM_MAX_LOGPROBS 20

/** Parameters of a request. Fill with llm_request_params_init(). Give exactly one of
 * prompt, tokens or messages. Everything is borrowed for the llm_request_submit call. */
typedef struct llm_request_params {
    size_t size;                        /**< sizeof(llm_request_params), set by init */
    const char *prompt;                 /**< text; special-token text is parsed, BOS added as the model asks */
    const llm_token *tokens;            /**< or tokens, used as they are */
    int32_t n_tokens;
    const llm_chat_message *messages;   /**< or a chat, rendered with the model's template and the assistant's opening */
    int32_t n_messages;
    const llm_sampler_params *sampling; /**< NULL: greedy */
    int32_t n;                          /**< completions of the prompt (forks sharing its cache); 0 = 1 */
    int32_t max_tokens;                 /**< tokens to generate per completion; 0 = until the context ends */
    const char *const *stop;            /**< stop strings (at most 16, each 1..256 bytes); not part of the output */
    int32_t n_stop;
    const llm_token *stop_tokens;       /**< tokens that end a completion (besides end-of-generation) */
    int32_t n_stop_tokens;
    int32_t logprobs;                   /**< report the top alternatives per token, 0..LLM_MAX_LOGPROBS */
    int32_t ignore_eos;                 /**< non-zero: end-of-generation tokens do not stop */
    int32_t priority;                   /**< higher runs first and is preempted last; default 0 */
    void *user;                         /**< passed back in every event of the request */
} llm_request_params;

static inline void llm_request_params_init(llm_request_params *p)
{
    memset(p, 0, sizeof *p);
    p->size = sizeof *p;
}

typedef enum llm_event_type {
    LLM_EVENT_TOKEN = 1,    /**< a completion generated a token */
    LLM_EVENT_FINISHED = 2, /**< a completion finished (the last event of that completion) */
    LLM_EVENT_ERROR = 3     /**< a completion failed (the last event of that completion) */
} llm_event_type;

typedef enum llm_finish_reason {
    LLM_FINISH_NONE = 0,
    LLM_FINISH_STOP = 1,      /**< end-of-generation token, stop token or stop string */
    LLM_FINISH_LENGTH = 2,    /**< max_tokens reached, or the context is full */
    LLM_FINISH_CANCELLED = 3  /**< llm_request_cancel */
} llm_finish_reason;

/**
 * One event. `text` holds the bytes released with this event: whole UTF-8 characters
 * (never split) and never any part of a stop string; text held back for that is
 * released with a later event. Concatenating the text of a completion's events gives
 * its output. For LLM_EVENT_ERROR, text is the error message.
 */
typedef struct llm_event {
    int32_t type;            /**< llm_event_type */
    int32_t index;           /**< completion index, 0..n-1 */
    llm_request_id id;
    void *user;              /**< the request's user pointer */
    llm_token token;         /**< TOKEN: the generated token; otherwise -1 */
    int32_t text_len;
    const char *text;        /**< text_len bytes, not NUL-terminated (see llm_poll for lifetime) */
    float logprob;           /**< TOKEN with logprobs > 0: log-probability of token under the model */
    int32_t n_top;           /**< number of alternatives below */
    llm_token top_tokens[LLM_MAX_LOGPROBS];
    float top_logprobs[LLM_MAX_LOGPROBS];
    int32_t finish_reason;   /**< FINISHED: llm_finish_reason */
    llm_status status;       /**< ERROR: the error */
    int32_t n_prompt_tokens; /**< FINISHED: prompt length in tokens */
    int32_t n_cached_tokens; /**< FINISHED: prompt tokens reused from the prefix cache */
    int32_t n_generated;     /**< FINISHED: tokens generated by this completion */
} llm_event;

/** An event sink: called on the thread that runs the step; `ev` and its text are valid
 * during the call only. It must not call back into the context. */
typedef void (*llm_event_fn)(const llm_event *ev, void *user);

/**
 * Queues a request.
 * @param[out] id its id (> 0), for cancel and to match events
 * Errors: LLM_ERR_INVALID_ARG (no input or more than one, empty prompt, a bad parameter,
 * n above n_seq_max, a prompt that does not fit the context), LLM_ERR_TEMPLATE,
 * LLM_ERR_NO_MEMORY; message in llm_context_last_error() (or llm_last_error() when
 * called while a worker runs).
 * Since: 1.1
 */
LLM_API llm_status llm_request_submit(llm_context *ctx, const llm_request_params *params,
                                      llm_request_id *id);

/**
 * Cancels a request: its completions finish with LLM_FINISH_CANCELLED and its cache
 * blocks are released (at once without a worker; before the worker's next step with one).
 * Errors: LLM_ERR_NOT_FOUND (unknown or already finished).
 * Since: 1.1
 */
LLM_API llm_status llm_request_cancel(llm_context *ctx, llm_request_id id);

/**
 * Runs one scheduler iteration: admits waiting requests, decodes one batch and emits the
 * resulting events. Does nothing when no request is pending.
 * Errors: LLM_ERR_INVALID_ARG (a worker runs this context), LLM_ERR_BACKEND,
 * LLM_ERR_NO_MEMORY (the requests of the failed batch end with LLM_EVENT_ERROR; others
 * carry on).
 * Since: 1.1
 */
LLM_API llm_status llm_step(llm_context *ctx);

/** Requests submitted and not yet finished (waiting or running). Since: 1.1 */
LLM_API int32_t llm_pending(llm_context *ctx);

/**
 * Takes up to max_events queued events, oldest first, copying their text into
 * text_buf (the events' text pointers point there). Stops early when the next event's
 * text does not fit. Returns the number of events taken, or -(bytes needed) when not
 * even the first event's text fits text_cap, or INT32_MIN on invalid arguments.
 * Events go to the queue only while no callback is set.
 * Since: 1.1
 */
LLM_API int32_t llm_poll(llm_context *ctx, llm_event *events, int32_t max_events,
                         char *text_buf, int32_t text_cap);

/** Sets (fn != NULL) or clears the event callback. Call it while no worker runs. Since: 1.1 */
LLM_API llm_status llm_context_set_event_callback(llm_context *ctx, llm_event_fn fn, void *user);

/**
 * Starts a worker thread that runs llm_step whenever requests are pending and sleeps
 * otherwise. Errors: LLM_ERR_INVALID_ARG (already running), LLM_ERR_NO_MEMORY.
 * Since: 1.1
 */
LLM_API llm_status llm_context_start_worker(llm_context *ctx);

/** Stops and joins the worker (after its current step); pending requests stay queued.
 * llm_context_free stops it too. Since: 1.1 */
LLM_API void llm_context_stop_worker(llm_context *ctx);

/** Counters of the request engine. */
typedef struct llm_engine_stats {
    size_t size;                  /**< sizeof(llm_engine_stats), set by the caller */
    int32_t n_waiting;            /**< requests queued or preempted */
    int32_t n_running;            /**< requests admitted */
    int64_t n_finished;           /**< completions finished (any reason) */
    int64_t n_steps;
    int64_t n_preemptions;
    int64_t tokens_prefilled;     /**< prompt (and recomputed) tokens decoded */
    int64_t tokens_generated;
    int64_t prefix_queries;       /**< admissions that looked up the prefix cache */
    int64_t prefix_hits;          /**< of those, admissions that reused at least one block */
    int64_t prefix_tokens_reused; /**< tokens not computed thanks to the prefix cache */
    int32_t kv_blocks;            /**< blocks in the cache */
    int32_t kv_blocks_free;       /**< blocks not used by any sequence (cached ones included) */
    int32_t kv_blocks_cached;     /**< unused blocks still holding a cached prefix */
    int32_t block_size;
} llm_engine_stats;

/** Fills the counters (set stats->size = sizeof *stats first). Errors: LLM_ERR_INVALID_ARG. Since: 1.1 */
LLM_API llm_status llm_engine_stats_get(llm_context *ctx, llm_engine_stats *stats);

/* ---- quantization --------------------------------------------------------------------- */

/** Target of llm_model_quantize: llama.cpp's file types (the value of general.file_type). */
typedef enum llm_ftype {
    LLM_FTYPE_Q4_0 = 2,
    LLM_FTYPE_Q4_1 = 3,
    LLM_FTYPE_Q8_0 = 7,
    LLM_FTYPE_Q5_0 = 8,
    LLM_FTYPE_Q5_1 = 9,
    LLM_FTYPE_Q2_K = 10,
    LLM_FTYPE_Q3_K_S = 11,
    LLM_FTYPE_Q3_K_M = 12,
    LLM_FTYPE_Q3_K_L = 13,
    LLM_FTYPE_Q4_K_S = 14,
    LLM_FTYPE_Q4_K_M = 15,
    LLM_FTYPE_Q5_K_S = 16,
    LLM_FTYPE_Q5_K_M = 17,
    LLM_FTYPE_Q6_K = 18,
    LLM_FTYPE_FORCE_32BIT = 0x7fffffff
} llm_ftype;

/** Parameters for llm_model_quantize. Fill with llm_quantize_params_init(). */
typedef struct llm_quantize_params {
    size_t size;               /**< sizeof(llm_quantize_params), set by init */
    int32_t ftype;             /**< llm_ftype; default LLM_FTYPE_Q4_K_M */
    int32_t n_threads;         /**< 0: one per online CPU (at most 64) */
    llm_progress_fn progress;  /**< optional; called after each tensor; non-zero cancels */
    void *progress_user;       /**< passed to progress */
} llm_quantize_params;

static inline void llm_quantize_params_init(llm_quantize_params *p)
{
    memset(p, 0, sizeof *p);
    p->size = sizeof *p;
    p->ftype = LLM_FTYPE_Q4_K_M;
}

/**
 * Writes a quantized copy of an F32/F16/BF16 GGUF model: every metadata pair is kept
 * (general.file_type and general.quantization_version are set), tensors keep their order,
 * names and shapes; each matrix gets the type the preset gives it (vectors and expert
 * routers stay as they are). Tensors already quantized are copied unchanged.
 * @param in_path  the source GGUF
 * @param out_path the file to write (replaced; removed again on failure)
 * @param params   NULL for defaults (Q4_K_M); borrowed for the call
 * Thread-safe: yes (independent calls). Errors: LLM_ERR_INVALID_ARG, LLM_ERR_IO,
 * LLM_ERR_INVALID_MODEL, LLM_ERR_NO_MEMORY, LLM_ERR_CANCELLED; message in llm_last_error().
 * Since: 1.1
 */
LLM_API llm_status llm_model_quantize(const char *in_path, const char *out_path,
                                      const llm_quantize_params *params);

/** The llm_ftype named "Q4_K_M", "q8_0" ... (case-insensitive), or -1. Since: 1.1 */
LLM_API int32_t llm_ftype_from_name(const char *name);

/** The name of an llm_ftype ("Q4_K_M"), or NULL. Static text. Since: 1.1 */
LLM_API const char *llm_ftype_name(int32_t ftype);

#ifdef __cplusplus
}
#endif

#endif /* LLM_H */
