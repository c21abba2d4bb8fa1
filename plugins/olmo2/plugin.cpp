// The olmo2 plugin: OLMo 2 (and Olmo 3 stored as olmo2). As llama.cpp's src/models/olmo2.cpp:
// no pre-norms; attention (Q/K RMS norms over the whole projection, NeoX RoPE) -> RMS norm ->
// residual -> SwiGLU FFN -> RMS norm -> residual. With attention.sliding_window > 0, all but every
// sliding_window_pattern-th layer attend to the last n_swa positions only and rotate without
// RoPE scaling (freq_scale 1, no YaRN), as llama.cpp does.
#include "plugin/export.hpp"
#include "plugin/graph.hpp"

namespace {

using archreg::plugin::Graph;
using archreg::plugin::Tensor;

int build(const archreg_graph_api_v2* api, archreg_graph* graph, const char*) {
  return archreg::plugin::guarded_build(api, graph, [](const Graph& g) {
    const int32_t n_layer = static_cast<int32_t>(g.hparam("n_layer"));
    const float eps = g.hparam_f("rms_eps", 1e-6);
    const int64_t n_swa = g.hparam("n_swa");
    const int64_t swa_period = g.hparam("swa_period", -1, 4);
    Tensor x = g.embed(g.require("token_embd.weight"));
    for (int32_t il = 0; il < n_layer; ++il) {
      const bool sliding = n_swa > 0 && (swa_period == 0 || il % swa_period < swa_period - 1);
      archreg::plugin::AttentionConfig attn = archreg::plugin::standard_attention(g, il, ARCHREG_ROPE_NEOX, eps);
      attn.qk_norm_whole = true;
      if (sliding) {
        attn.rope.freq_scale = 1.0f;
        attn.rope.ext_factor = 0.0f;
        attn.rope.attn_factor = 1.0f;
        attn.attention.sliding_window = static_cast<int32_t>(n_swa);
      }
      Tensor a = archreg::plugin::self_attention(g, il, x, attn);
      x = g.add(g.rms_norm(a, g.require("post_attention_norm.weight", il), eps), x);
      Tensor f = g.named(g.ffn(x, archreg::plugin::ffn_weights(g, il)), "ffn_out", il);
      x = g.named(g.add(g.rms_norm(f, g.require("post_ffw_norm.weight", il), eps), x), "l_out", il);
    }
    archreg::plugin::standard_logits(g, x, eps);
  });
}

}  // namespace

ARCHREG_DEFINE_PLUGIN("olmo2", nullptr, build, "attn_qkv")
