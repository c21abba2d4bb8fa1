/* The archreg plugin ABI, version 2: the whole boundary between the host and a plugin.
 *
 * FROZEN. Any change to a type or member below is a new ARCHREG_PLUGIN_ABI_VERSION; the host
 * refuses a plugin of another version before calling anything else, naming both numbers.
 * Only C types cross the boundary: no C++ classes, no allocations that change owner, and no
 * exceptions (a plugin catches its own; the host also guards every call). Option structs start
 * with their own size, so a later version can append members without breaking older plugins
 * (a member beyond `size` reads as zero, and zero always means "the default").
 * See docs/plugin-abi.md.
 */
#ifndef ARCHREG_PLUGIN_ABI_H
#define ARCHREG_PLUGIN_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ARCHREG_PLUGIN_ABI_VERSION 2u

/* The exported symbol (a Boost.DLL alias) through which the host finds a plugin. */
#define ARCHREG_PLUGIN_ENTRY_NAME "archreg_plugin"

/* ---- checks (validation) ------------------------------------------------------------------ */

/* Host-owned state of one check run; opaque to plugins. */
typedef struct archreg_check_context archreg_check_context;

/* What the host offers a plugin's check. Valid only during the call it is passed to. */
typedef struct archreg_host_v2 {
  uint32_t abi_version;
  /* The spec's integer hyperparameter `name`, as evaluated for this file (the global value).
   * Returns 1 and stores it in *value, or 0 if it has no value. */
  int (*hparam)(const archreg_check_context* context, const char* name, int64_t* value);
  /* 1 if the file's metadata has `key`, else 0. */
  int (*has_key)(const archreg_check_context* context, const char* key);
  /* 1 if the file stores a tensor named `name` (exactly as stored), else 0. */
  int (*has_tensor)(const archreg_check_context* context, const char* name);
  /* Adds a finding. `code` is one of docs/cli.md's codes; the strings are copied. */
  void (*report)(archreg_check_context* context, const char* code, const char* subject, const char* message);
} archreg_host_v2;

/* ---- the forward pass: a graph built from the host's blocks -------------------------------- */

/* A graph under construction, and a value in it (activations: float32, or a weight). Both are
 * host-owned and valid only during the build call. Every block returns NULL when it fails; the
 * first failure is kept (sticky) and reported by the host after the build returns, so a plugin
 * may chain calls without checking each one. Blocks given a NULL input return NULL. */
typedef struct archreg_graph archreg_graph;
typedef struct archreg_tensor archreg_tensor;

/* Shapes follow ggml: ne[0] is the contiguous axis. A "row" is ne[0] values; a batch of
 * n_tokens activations is [n, n_tokens]; per-head values are [head_dim, n_head, n_tokens]. */

typedef enum archreg_norm_kind { ARCHREG_NORM_RMS = 0, ARCHREG_NORM_LAYER = 1 } archreg_norm_kind;

typedef struct archreg_norm_options {
  uint32_t size;
  uint32_t kind; /* archreg_norm_kind */
  float eps;
} archreg_norm_options;

typedef enum archreg_rope_mode { ARCHREG_ROPE_NORMAL = 0, ARCHREG_ROPE_NEOX = 2 } archreg_rope_mode;

typedef struct archreg_rope_options {
  uint32_t size;
  uint32_t mode;    /* archreg_rope_mode: adjacent pairs (normal) or halves (NeoX) */
  int32_t n_rot;    /* rotated dimensions of each head (0: the whole head) */
  float freq_base;  /* 0: 10000 */
  float freq_scale; /* 0: 1 (linear scaling divides positions by 1/freq_scale) */
  /* YaRN (all zero: off) */
  float ext_factor;
  float attn_factor; /* 0: 1 */
  float beta_fast;
  float beta_slow;
  int32_t n_ctx_orig;
  /* Optional per-dimension frequency divisors [n_rot/2] (a weight, e.g. rope_freqs), or NULL. */
  const archreg_tensor* freq_factors;
} archreg_rope_options;

typedef struct archreg_attention_options {
  uint32_t size;
  float scale;            /* applied to q·k (0: 1/sqrt(head_dim of q)) */
  int32_t sliding_window; /* 0: attend to every earlier position; n: to the last n only */
  /* Optional learned per-head sink logits [n_head], or NULL. */
  const archreg_tensor* sinks;
  float softcap; /* 0: none; else scores = softcap * tanh(scores / softcap) */
} archreg_attention_options;

typedef enum archreg_activation {
  ARCHREG_ACT_SILU = 0,       /* SwiGLU: silu(gate) * up */
  ARCHREG_ACT_GELU = 1,       /* GeGLU (tanh approximation) */
  ARCHREG_ACT_SWIGLU_OAI = 2, /* clamped: min(g, limit)*sigmoid(alpha*g) * (clamp(u, +-limit) + 1) */
} archreg_activation;

typedef struct archreg_glu_options {
  uint32_t size;
  uint32_t activation; /* archreg_activation */
  float alpha;         /* SWIGLU_OAI: 0 means 1.702 */
  float limit;         /* SWIGLU_OAI: 0 means 7.0 */
} archreg_glu_options;

/* The weights of a gated FFN. Biases may be NULL. The host may run gate and up as one product
 * when they are parts of one fused storage; the plugin never knows. */
typedef struct archreg_ffn_weights {
  uint32_t size;
  const archreg_tensor* gate;
  const archreg_tensor* up;
  const archreg_tensor* down;
  const archreg_tensor* gate_bias;
  const archreg_tensor* up_bias;
  const archreg_tensor* down_bias;
} archreg_ffn_weights;

typedef enum archreg_gating {
  ARCHREG_GATING_SOFTMAX = 0,      /* probabilities = softmax(logits) over all experts */
  ARCHREG_GATING_SIGMOID = 1,      /* probabilities = sigmoid(logits) */
  ARCHREG_GATING_SOFTMAX_TOPK = 2, /* softmax over the selected experts' logits */
} archreg_gating;

typedef struct archreg_moe_weights {
  uint32_t size;
  const archreg_tensor* router;         /* [n_embd, n_expert] */
  const archreg_tensor* router_bias;    /* [n_expert] or NULL */
  const archreg_tensor* selection_bias; /* [n_expert] or NULL: added for selection only */
  archreg_ffn_weights experts;          /* 3-D: [n_embd, n_ff, n_expert], down [n_ff, n_embd, n_expert] */
} archreg_moe_weights;

typedef struct archreg_moe_options {
  uint32_t size;
  int32_t n_expert_used;
  uint32_t gating;    /* archreg_gating */
  int32_t normalize;  /* 1: selected weights divided by their sum */
  float weight_scale; /* 0: 1 */
  int32_t n_group;    /* group-limited selection (0: off) */
  int32_t n_group_used;
  archreg_glu_options glu;
} archreg_moe_options;

/* The host's building blocks. Valid only during the build call. */
typedef struct archreg_graph_api_v2 {
  uint32_t abi_version;
  uint32_t size;

  /* Hyperparameters of the spec, evaluated for this file. `layer` < 0: the global value.
   * Each returns 1 and stores the value, 0 when the hparam has no value. */
  int (*hparam_int)(archreg_graph* g, const char* name, int32_t layer, int64_t* value);
  int (*hparam_float)(archreg_graph* g, const char* name, int32_t layer, double* value);
  /* The string value, NUL-terminated, valid during the build. */
  int (*hparam_string)(archreg_graph* g, const char* name, const char** value);

  /* A logical weight by its spec name ("token_embd.weight", "attn_q.weight") in `layer`
   * (< 0 for a global tensor); NULL when the file has none (optional or tied tensors). */
  const archreg_tensor* (*weight)(archreg_graph* g, const char* name, int32_t layer);

  /* The batch: n tokens at consecutive positions. */
  int32_t (*n_tokens)(archreg_graph* g);
  const archreg_tensor* (*embed)(archreg_graph* g, const archreg_tensor* table); /* [n_embd, n_tokens] */

  const archreg_tensor* (*norm)(archreg_graph* g, const archreg_tensor* x, const archreg_tensor* weight, const archreg_tensor* bias,
                                const archreg_norm_options* options);
  /* weight [k, n] (or a 3-D [k, n, h] applied per head to x [k, h, t]) times x [k, ...]. */
  const archreg_tensor* (*matmul)(archreg_graph* g, const archreg_tensor* weight, const archreg_tensor* x);
  /* a + b, a * b: b broadcast over a's rows when it has fewer; b may be a weight. */
  const archreg_tensor* (*add)(archreg_graph* g, const archreg_tensor* a, const archreg_tensor* b);
  const archreg_tensor* (*mul)(archreg_graph* g, const archreg_tensor* a, const archreg_tensor* b);
  const archreg_tensor* (*scale)(archreg_graph* g, const archreg_tensor* x, float factor);
  const archreg_tensor* (*sigmoid)(archreg_graph* g, const archreg_tensor* x);
  /* Same values, another shape (same element count). */
  const archreg_tensor* (*reshape)(archreg_graph* g, const archreg_tensor* x, int64_t ne0, int64_t ne1, int64_t ne2);
  /* Elements [begin, begin + count) of axis 0 of every row. */
  const archreg_tensor* (*slice)(archreg_graph* g, const archreg_tensor* x, int64_t begin, int64_t count);
  /* Joins along axis 0; b may have 1 along axis 1 and is then repeated (a shared rope key). */
  const archreg_tensor* (*concat)(archreg_graph* g, const archreg_tensor* a, const archreg_tensor* b);
  const archreg_tensor* (*rope)(archreg_graph* g, const archreg_tensor* x, const archreg_rope_options* options);
  /* Causal attention of this layer over its KV cache. q [dk, n_head, t], k [dk, n_head_kv, t],
   * v [dv, n_head_kv, t] (n_head a multiple of n_head_kv); stores k and v; returns [dv, n_head, t]. */
  const archreg_tensor* (*attention)(archreg_graph* g, int32_t layer, const archreg_tensor* q, const archreg_tensor* k,
                                     const archreg_tensor* v, const archreg_attention_options* options);
  const archreg_tensor* (*ffn)(archreg_graph* g, const archreg_tensor* x, const archreg_ffn_weights* weights,
                               const archreg_glu_options* options);
  const archreg_tensor* (*moe)(archreg_graph* g, const archreg_tensor* x, const archreg_moe_weights* weights,
                               const archreg_moe_options* options);
  /* Keeps the rows whose logits are wanted (the last one, or every one when asked). */
  const archreg_tensor* (*output_rows)(archreg_graph* g, const archreg_tensor* x);
  /* Marks the logits [n_vocab, rows]. */
  void (*set_logits)(archreg_graph* g, const archreg_tensor* logits);
  /* Names a value for dumps and error messages ("ffn_out", layer). */
  void (*name)(archreg_graph* g, const archreg_tensor* x, const char* name, int32_t layer);
  /* Fails the build with a message (a file the forward cannot run). */
  void (*fail)(archreg_graph* g, const char* message);
} archreg_graph_api_v2;

/* ---- the descriptor ------------------------------------------------------------------------ */

typedef struct archreg_plugin_v2 {
  /* First member, always: the host reads it before anything else. */
  uint32_t abi_version;
  /* The plugin's name, for messages ("myfamily"). */
  const char* name;
  /* The general.architecture values this plugin serves. */
  const char* const* archs;
  uint32_t n_archs;
  /* The fusable groups (spec names, e.g. "ffn_gate_up_exps") whose fused form the plugin's
   * forward pass runs. A file that stores another group fused is refused at load. */
  const char* const* fused_groups;
  uint32_t n_fused_groups;
  /* Optional (may be NULL): checks a spec cannot express, reported through host->report.
   * Returns 0 when the check ran, non-zero when it could not (the host reports that). */
  int (*check)(const archreg_host_v2* host, archreg_check_context* context, const char* arch);
  /* Optional (NULL: the arch is validate-only): builds the forward pass for one batch from the
   * host's blocks. Returns 0 on success; on failure the first block error (or `fail`) is kept. */
  int (*build)(const archreg_graph_api_v2* api, archreg_graph* graph, const char* arch);
} archreg_plugin_v2;

/* The type of the exported entry point. */
typedef const archreg_plugin_v2* (*archreg_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* ARCHREG_PLUGIN_ABI_H */
