// For plugin sources: a thin, header-only C++ face of the host's graph blocks (abi.h), so a
// forward pass reads like llama.cpp's src/models/*.cpp — norm, attention, residual, FFN — one
// call per step. Nothing here computes: every call records a node in the host's graph.
//
//   int build(const archreg_graph_api_v2* api, archreg_graph* graph, const char*) {
//     archreg::plugin::Graph g(api, graph);
//     auto x = g.embed(g.weight("token_embd.weight"));
//     ...
//     g.logits(g.matmul(g.weight("output.weight"), g.output_rows(x)));
//     return 0;
//   }
#pragma once

#include <cstdint>
#include <exception>
#include <string>

#include "plugin/abi.h"

namespace archreg::plugin {

using Tensor = const archreg_tensor*;

class Graph {
 public:
  Graph(const archreg_graph_api_v2* api, archreg_graph* graph) : api_(api), g_(graph) {}

  // Hyperparameters of the spec; `fallback` when the file has no value. layer < 0: global.
  int64_t hparam(const char* name, int32_t layer = -1, int64_t fallback = 0) const {
    int64_t value = 0;
    return api_->hparam_int(g_, name, layer, &value) != 0 ? value : fallback;
  }
  bool has_hparam(const char* name) const {
    double value = 0;
    return api_->hparam_float(g_, name, -1, &value) != 0;
  }
  float hparam_f(const char* name, double fallback = 0.0, int32_t layer = -1) const {
    double value = 0;
    return static_cast<float>(api_->hparam_float(g_, name, layer, &value) != 0 ? value : fallback);
  }
  std::string hparam_s(const char* name, const char* fallback = "") const {
    const char* value = nullptr;
    return api_->hparam_string(g_, name, &value) != 0 ? std::string(value) : std::string(fallback);
  }

  // A logical weight ("attn_q.weight") of a layer, or a global one; nullptr when absent.
  Tensor weight(const char* name, int32_t layer = -1) const { return api_->weight(g_, name, layer); }
  // The same, failing the build when the file lacks it.
  Tensor require(const char* name, int32_t layer = -1) const {
    Tensor t = weight(name, layer);
    if (t == nullptr) fail((std::string("missing tensor ") + name + (layer >= 0 ? " in layer " + std::to_string(layer) : "")).c_str());
    return t;
  }

  int32_t n_tokens() const { return api_->n_tokens(g_); }
  Tensor embed(Tensor table) const { return api_->embed(g_, table); }

  Tensor rms_norm(Tensor x, Tensor scale, float eps) const {
    archreg_norm_options o{sizeof o, ARCHREG_NORM_RMS, eps};
    return api_->norm(g_, x, scale, nullptr, &o);
  }
  Tensor layer_norm(Tensor x, Tensor scale, Tensor bias, float eps) const {
    archreg_norm_options o{sizeof o, ARCHREG_NORM_LAYER, eps};
    return api_->norm(g_, x, scale, bias, &o);
  }
  Tensor matmul(Tensor w, Tensor x) const { return api_->matmul(g_, w, x); }
  // w x + b (b may be nullptr).
  Tensor linear(Tensor w, Tensor b, Tensor x) const {
    Tensor y = matmul(w, x);
    return b != nullptr ? add(y, b) : y;
  }
  Tensor add(Tensor a, Tensor b) const { return api_->add(g_, a, b); }
  Tensor mul(Tensor a, Tensor b) const { return api_->mul(g_, a, b); }
  Tensor scale(Tensor x, float factor) const { return api_->scale(g_, x, factor); }
  Tensor sigmoid(Tensor x) const { return api_->sigmoid(g_, x); }
  Tensor reshape(Tensor x, int64_t ne0, int64_t ne1, int64_t ne2 = 1) const { return api_->reshape(g_, x, ne0, ne1, ne2); }
  Tensor slice(Tensor x, int64_t begin, int64_t count) const { return api_->slice(g_, x, begin, count); }
  Tensor concat(Tensor a, Tensor b) const { return api_->concat(g_, a, b); }
  Tensor rope(Tensor x, archreg_rope_options o) const {
    o.size = sizeof o;
    return api_->rope(g_, x, &o);
  }
  Tensor attention(int32_t layer, Tensor q, Tensor k, Tensor v, archreg_attention_options o = {}) const {
    o.size = sizeof o;
    return api_->attention(g_, layer, q, k, v, &o);
  }
  Tensor ffn(Tensor x, archreg_ffn_weights w, archreg_glu_options o = {}) const {
    w.size = sizeof w;
    o.size = sizeof o;
    return api_->ffn(g_, x, &w, &o);
  }
  Tensor moe(Tensor x, archreg_moe_weights w, archreg_moe_options o) const {
    w.size = sizeof w;
    w.experts.size = sizeof w.experts;
    o.size = sizeof o;
    o.glu.size = sizeof o.glu;
    return api_->moe(g_, x, &w, &o);
  }
  Tensor output_rows(Tensor x) const { return api_->output_rows(g_, x); }
  void logits(Tensor x) const { api_->set_logits(g_, x); }
  Tensor named(Tensor x, const char* name, int32_t layer = -1) const {
    api_->name(g_, x, name, layer);
    return x;
  }
  void fail(const char* message) const { api_->fail(g_, message); }

 private:
  const archreg_graph_api_v2* api_;
  archreg_graph* g_;
};

// The weights of a layer's gated FFN, by their standard spec names ("ffn_gate", ...), with the
// suffix of the part: "" for dense FFNs, "_exps" for experts, "_shexp" for a shared expert.
inline archreg_ffn_weights ffn_weights(const Graph& g, int32_t layer, const std::string& suffix = "") {
  archreg_ffn_weights w{};
  w.size = sizeof w;
  w.gate = g.weight(("ffn_gate" + suffix + ".weight").c_str(), layer);
  w.up = g.require(("ffn_up" + suffix + ".weight").c_str(), layer);
  w.down = g.require(("ffn_down" + suffix + ".weight").c_str(), layer);
  w.gate_bias = g.weight(("ffn_gate" + suffix + ".bias").c_str(), layer);
  w.up_bias = g.weight(("ffn_up" + suffix + ".bias").c_str(), layer);
  w.down_bias = g.weight(("ffn_down" + suffix + ".bias").c_str(), layer);
  return w;
}

}  // namespace archreg::plugin

namespace archreg::plugin {

// RoPE as the spec's standard hparams describe it: rope_freq_base (default 10000),
// rope_scaling_type ("linear" or "yarn" divide positions by rope_scaling_factor), and for YaRN
// rope_scaling_orig_ctx. Archs with other conventions fill archreg_rope_options themselves.
inline archreg_rope_options standard_rope(const Graph& g, uint32_t mode, int32_t n_rot) {
  archreg_rope_options o{};
  o.size = sizeof o;
  o.mode = mode;
  o.n_rot = n_rot;
  o.freq_base = g.hparam_f("rope_freq_base", 10000.0);
  const std::string scaling = g.hparam_s("rope_scaling_type", "none");
  const float factor = g.hparam_f("rope_scaling_factor", 0.0);
  if ((scaling == "linear" || scaling == "yarn") && factor > 0.0f) o.freq_scale = 1.0f / factor;
  if (scaling == "yarn") {
    o.ext_factor = 1.0f;
    o.attn_factor = 1.0f;
    o.beta_fast = g.hparam_f("rope_yarn_beta_fast", 32.0);
    o.beta_slow = g.hparam_f("rope_yarn_beta_slow", 1.0);
    o.n_ctx_orig = static_cast<int32_t>(g.hparam("rope_scaling_orig_ctx", -1, g.hparam("n_ctx_train")));
  }
  return o;
}

// A standard self-attention block: Q/K/V projections (with optional biases), optional per-head
// Q/K RMS norms, RoPE, attention over the KV cache, output projection. Reads the spec's
// standard names (attn_q, attn_k, attn_v, attn_q_norm, attn_k_norm, attn_output; or one
// attn_qkv tensor where the spec has no attn_q).
struct AttentionConfig {
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  float eps = 1e-6f;  // for the Q/K norms
  // Q/K norms over the whole projection instead of over each head.
  bool qk_norm_whole = false;
  // false: no rotary embedding at all (e.g. a spec's switch that turns RoPE off)
  bool use_rope = true;
  // per-head Q/K norms after RoPE instead of before it
  bool qk_norm_after_rope = false;
  archreg_rope_options rope{};
  archreg_attention_options attention{};
};

// The usual configuration of layer il: the spec's standard names n_head and n_head_kv (per
// layer), head_dim_k and n_rot, RoPE from standard_rope, Q/K norms (if any) with `eps`.
inline AttentionConfig standard_attention(const Graph& g, int32_t il, uint32_t rope_mode, float eps) {
  AttentionConfig c;
  c.n_head = g.hparam("n_head", il);
  c.n_head_kv = g.hparam("n_head_kv", il);
  c.head_dim = g.hparam("head_dim_k");
  c.eps = eps;
  c.rope = standard_rope(g, rope_mode, static_cast<int32_t>(g.hparam("n_rot")));
  return c;
}

inline Tensor self_attention(const Graph& g, int32_t il, Tensor x, const AttentionConfig& c) {
  const int32_t n = g.n_tokens();
  Tensor q = nullptr;
  Tensor k = nullptr;
  Tensor v = nullptr;
  Tensor qkv_weight = g.weight("attn_q.weight", il) == nullptr ? g.weight("attn_qkv.weight", il) : nullptr;
  if (qkv_weight != nullptr) {
    // a spec whose only form is one attn_qkv tensor (not a fusable group): Q, then K, then V rows
    const int64_t n_q = c.head_dim * c.n_head;
    const int64_t n_kv = c.head_dim * c.n_head_kv;
    Tensor qkv = g.linear(qkv_weight, g.weight("attn_qkv.bias", il), x);
    q = g.slice(qkv, 0, n_q);
    k = g.slice(qkv, n_q, n_kv);
    v = g.slice(qkv, n_q + n_kv, n_kv);
  } else {
    q = g.linear(g.require("attn_q.weight", il), g.weight("attn_q.bias", il), x);
    k = g.linear(g.require("attn_k.weight", il), g.weight("attn_k.bias", il), x);
    v = g.linear(g.require("attn_v.weight", il), g.weight("attn_v.bias", il), x);
  }
  Tensor q_norm = g.weight("attn_q_norm.weight", il);
  Tensor k_norm = g.weight("attn_k_norm.weight", il);
  if (c.qk_norm_whole) {
    if (q_norm != nullptr) q = g.rms_norm(q, q_norm, c.eps);
    if (k_norm != nullptr) k = g.rms_norm(k, k_norm, c.eps);
  }
  q = g.reshape(q, c.head_dim, c.n_head, n);
  k = g.reshape(k, c.head_dim, c.n_head_kv, n);
  v = g.reshape(v, c.head_dim, c.n_head_kv, n);
  const bool per_head = !c.qk_norm_whole;
  if (per_head && !c.qk_norm_after_rope) {
    if (q_norm != nullptr) q = g.rms_norm(q, q_norm, c.eps);
    if (k_norm != nullptr) k = g.rms_norm(k, k_norm, c.eps);
  }
  if (c.use_rope) {
    q = g.rope(q, c.rope);
    k = g.rope(k, c.rope);
  }
  if (per_head && c.qk_norm_after_rope) {
    if (q_norm != nullptr) q = g.rms_norm(q, q_norm, c.eps);
    if (k_norm != nullptr) k = g.rms_norm(k, k_norm, c.eps);
  }
  q = g.named(q, "Qcur", il);
  k = g.named(k, "Kcur", il);
  Tensor a = g.attention(il, q, k, v, c.attention);
  a = g.reshape(a, c.head_dim * c.n_head, n);
  return g.named(g.linear(g.require("attn_output.weight", il), g.weight("attn_output.bias", il), a), "attn_out", il);
}

// The routed experts of a layer by the standard names (ffn_gate_inp, ffn_*_exps, biases,
// exp_probs_b), run with `options`.
inline Tensor routed_experts(const Graph& g, int32_t il, Tensor x, archreg_moe_options options) {
  archreg_moe_weights w{};
  w.router = g.require("ffn_gate_inp.weight", il);
  w.router_bias = g.weight("ffn_gate_inp.bias", il);
  w.selection_bias = g.weight("exp_probs_b.bias", il);
  w.experts = ffn_weights(g, il, "_exps");
  return g.moe(x, w, options);
}

// llama.cpp's expert_gating_func key: 1 softmax, 2 sigmoid, 3 softmax over the chosen.
inline uint32_t gating_from_key(int64_t value, uint32_t fallback) {
  switch (value) {
    case 1: return ARCHREG_GATING_SOFTMAX;
    case 2: return ARCHREG_GATING_SIGMOID;
    case 3: return ARCHREG_GATING_SOFTMAX_TOPK;
    default: return fallback;
  }
}

// The output head over final hidden states: `output` (falling back to the token embedding:
// tied embeddings) plus `output.bias` when the file has one.
inline Tensor output_head(const Graph& g, Tensor x) {
  Tensor head = g.weight("output.weight");
  return g.linear(head != nullptr ? head : g.require("token_embd.weight"), g.weight("output.bias"), x);
}

// Routing as llama.cpp's generic MoE keys set it: expert_used_count, expert_gating_func
// (`fallback` when the spec gives no value), expert_weights_norm, expert_weights_scale.
inline archreg_moe_options moe_options_from_keys(const Graph& g, uint32_t fallback) {
  archreg_moe_options o{};
  o.n_expert_used = static_cast<int32_t>(g.hparam("n_expert_used"));
  o.gating = gating_from_key(g.hparam("expert_gating_func"), fallback);
  o.normalize = g.hparam_f("expert_weights_norm", 0.0) != 0.0f ? 1 : 0;
  o.weight_scale = g.hparam_f("expert_weights_scale", 0.0);  // 0: unscaled
  return o;
}

// The FFN of a layer of a model with leading dense layers: a SwiGLU FFN in the first n_dense_lead, else
// the routed experts plus the shared experts when the layer has them (ffn_*_shexp).
inline Tensor dense_lead_or_experts(const Graph& g, int32_t il, Tensor x, int64_t n_dense_lead, const archreg_moe_options& options) {
  if (il < n_dense_lead) return g.ffn(x, ffn_weights(g, il));
  Tensor out = routed_experts(g, il, x, options);
  if (g.weight("ffn_up_shexp.weight", il) != nullptr) out = g.add(out, g.ffn(x, ffn_weights(g, il, "_shexp")));
  return out;
}

// The final norm and the logits of the rows the runtime wants.
inline void standard_logits(const Graph& g, Tensor x, float eps) {
  x = g.output_rows(x);
  x = g.rms_norm(x, g.require("output_norm.weight"), eps);
  g.logits(output_head(g, x));
}

// Runs a plugin's build body, turning a C++ exception into a build failure (none may cross
// the ABI).
template <class Body>
int guarded_build(const archreg_graph_api_v2* api, archreg_graph* graph, Body&& body) {
  Graph g(api, graph);
  try {
    body(g);
    return 0;
  } catch (const std::exception& error) {
    g.fail(error.what());
  } catch (...) {
    g.fail("the plugin threw an unknown exception");
  }
  return 1;
}

}  // namespace archreg::plugin
