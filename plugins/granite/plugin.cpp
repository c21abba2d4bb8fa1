// The granite plugin: IBM Granite 3.x, dense (granite) and MoE (granitemoe, with or without a
// shared expert). As llama.cpp's src/models/granite.cpp: the token embedding times
// embedding_scale; per layer RMS norm -> attention (LLaMA RoPE unless rope.scaling.finetuned is
// false, q·k scaled by attention.scale) -> times residual_scale -> residual -> RMS norm -> SwiGLU
// FFN, or softmax-routed experts with normalised top-k weights plus the shared expert -> times
// residual_scale -> residual; the logits divided by logit_scale. A multiplier that is absent or 0
// is not applied.
#include "plugin/export.hpp"
#include "plugin/graph.hpp"

namespace {

using archreg::plugin::Graph;
using archreg::plugin::Tensor;

Tensor scaled(const Graph& g, Tensor x, float factor) {
  return factor != 0.0f ? g.scale(x, factor) : x;
}

int build(const archreg_graph_api_v2* api, archreg_graph* graph, const char*) {
  return archreg::plugin::guarded_build(api, graph, [](const Graph& g) {
    const int32_t n_layer = static_cast<int32_t>(g.hparam("n_layer"));
    const int64_t n_expert = g.hparam("n_expert");
    const float eps = g.hparam_f("rms_eps", 1e-5);
    const float residual_scale = g.hparam_f("residual_scale", 0.0);
    const float attention_scale = g.hparam_f("attention_scale", 0.0);
    const float logit_scale = g.hparam_f("logit_scale", 1.0);
    if (g.weight("rope_factors_long.weight") != nullptr || g.weight("rope_factors_short.weight") != nullptr) {
      g.fail("LongRoPE factors (rope_factors_long/short) are not supported by the granite forward pass");
      return;
    }
    Tensor x = scaled(g, g.embed(g.require("token_embd.weight")), g.hparam_f("embedding_scale", 0.0));
    for (int32_t il = 0; il < n_layer; ++il) {
      archreg::plugin::AttentionConfig attn = archreg::plugin::standard_attention(g, il, ARCHREG_ROPE_NORMAL, eps);
      attn.use_rope = g.hparam_f("rope_finetuned", 1.0) != 0.0f;
      attn.rope.freq_factors = g.weight("rope_freqs.weight");
      attn.attention.scale = attention_scale;  // 0: 1/sqrt(head size), as llama.cpp
      Tensor h = g.rms_norm(x, g.require("attn_norm.weight", il), eps);
      x = g.add(scaled(g, archreg::plugin::self_attention(g, il, h, attn), residual_scale), x);
      h = g.rms_norm(x, g.require("ffn_norm.weight", il), eps);
      Tensor ffn = nullptr;
      if (n_expert == 0) {
        ffn = g.ffn(h, archreg::plugin::ffn_weights(g, il));
      } else {
        archreg_moe_options o{};
        o.n_expert_used = static_cast<int32_t>(g.hparam("n_expert_used"));
        o.gating = ARCHREG_GATING_SOFTMAX;
        o.normalize = 1;
        ffn = archreg::plugin::routed_experts(g, il, h, o);
        if (g.weight("ffn_up_shexp.weight", il) != nullptr) ffn = g.add(ffn, g.ffn(h, archreg::plugin::ffn_weights(g, il, "_shexp")));
      }
      x = g.named(g.add(scaled(g, g.named(ffn, "ffn_out", il), residual_scale), x), "l_out", il);
    }
    x = g.rms_norm(g.output_rows(x), g.require("output_norm.weight"), eps);
    g.logits(g.scale(archreg::plugin::output_head(g, x), 1.0f / logit_scale));
  });
}

}  // namespace

ARCHREG_DEFINE_PLUGIN("granite", nullptr, build, "attn_qkv", "ffn_gate_up_exps")
