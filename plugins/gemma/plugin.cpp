// The gemma plugin: Gemma 3 text decoders. As llama.cpp's src/models/gemma3.cpp (the iSWA graph):
// the token embedding times sqrt(n_embd); per layer RMS norm -> attention (per-head Q/K RMS norms,
// NeoX RoPE, q·k scaled by 1/sqrt(head size), or by 1/sqrt(n_embd / n_head) for the 62-layer
// 27B as llama.cpp does) -> RMS norm -> residual -> RMS norm -> GeGLU FFN -> RMS norm ->
// residual. Layers 0-4 of every 6 attend to the last attention.sliding_window positions and rotate
// with base 10000 and no scaling; every 6th layer is global, with rope.freq_base and the file's
// RoPE scaling. A file without a sliding window takes llama.cpp's non-iSWA graph, which ends in a
// final logit softcap the host has no block for: refused at load.
#include <cmath>

#include "plugin/export.hpp"
#include "plugin/graph.hpp"

namespace {

using archreg::plugin::Graph;
using archreg::plugin::Tensor;

constexpr int32_t kSwaPeriod = 6;         // llama.cpp: hparams.set_swa_pattern(6)
constexpr float kSwaFreqBase = 10000.0f;  // llama.cpp: rope_freq_base_train_swa

int build(const archreg_graph_api_v2* api, archreg_graph* graph, const char*) {
  return archreg::plugin::guarded_build(api, graph, [](const Graph& g) {
    const int32_t n_layer = static_cast<int32_t>(g.hparam("n_layer"));
    const int64_t n_embd = g.hparam("n_embd");
    const int64_t head_dim = g.hparam("head_dim_k");
    const int64_t n_swa = g.hparam("n_swa");
    const float eps = g.hparam_f("rms_eps", 1e-6);
    if (n_swa <= 0) {
      g.fail(
          "gemma3 without attention.sliding_window runs llama.cpp's non-iSWA graph with a final logit softcap, which this runtime cannot "
          "express");
      return;
    }
    const float kq_scale = n_layer == 62 ? 1.0f / std::sqrt(static_cast<float>(n_embd / g.hparam("n_head", 0)))
                                         : 1.0f / std::sqrt(static_cast<float>(head_dim));
    Tensor x = g.scale(g.embed(g.require("token_embd.weight")), std::sqrt(static_cast<float>(n_embd)));
    for (int32_t il = 0; il < n_layer; ++il) {
      const bool sliding = il % kSwaPeriod < kSwaPeriod - 1;
      archreg::plugin::AttentionConfig attn;
      attn.n_head = g.hparam("n_head", il);
      attn.n_head_kv = g.hparam("n_head_kv", il);
      attn.head_dim = head_dim;
      attn.eps = eps;
      attn.rope = archreg::plugin::standard_rope(g, ARCHREG_ROPE_NEOX, static_cast<int32_t>(g.hparam("n_rot")));
      if (sliding) {
        attn.rope = archreg_rope_options{};
        attn.rope.mode = ARCHREG_ROPE_NEOX;
        attn.rope.n_rot = static_cast<int32_t>(g.hparam("n_rot"));
        attn.rope.freq_base = kSwaFreqBase;
        attn.attention.sliding_window = static_cast<int32_t>(n_swa);
      }
      attn.attention.scale = kq_scale;
      Tensor h = g.rms_norm(x, g.require("attn_norm.weight", il), eps);
      h = archreg::plugin::self_attention(g, il, h, attn);
      x = g.add(g.rms_norm(h, g.require("post_attention_norm.weight", il), eps), x);
      archreg_glu_options glu{};
      glu.activation = ARCHREG_ACT_GELU;
      h = g.ffn(g.rms_norm(x, g.require("ffn_norm.weight", il), eps), archreg::plugin::ffn_weights(g, il), glu);
      h = g.rms_norm(g.named(h, "ffn_out", il), g.require("post_ffw_norm.weight", il), eps);
      x = g.named(g.add(h, x), "l_out", il);
    }
    archreg::plugin::standard_logits(g, x, eps);
  });
}

}  // namespace

ARCHREG_DEFINE_PLUGIN("gemma", nullptr, build, "attn_qkv")
