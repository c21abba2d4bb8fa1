// The gpt-oss plugin: as llama.cpp's src/models/openai-moe-iswa.cpp — attention with biases,
// learned sinks and a sliding window on alternate layers, YaRN NeoX RoPE, a post-attention norm,
// and experts routed by a softmax over the chosen logits with a clamped SwiGLU and biases.
#include "plugin/export.hpp"
#include "plugin/graph.hpp"

namespace {

using archreg::plugin::Graph;
using archreg::plugin::Tensor;

int build(const archreg_graph_api_v2* api, archreg_graph* graph, const char*) {
  return archreg::plugin::guarded_build(api, graph, [](const Graph& g) {
    const int32_t n_layer = static_cast<int32_t>(g.hparam("n_layer"));
    const float eps = g.hparam_f("rms_eps", 1e-5);
    const int64_t swa_period = g.hparam("swa_period", -1, 2);
    Tensor x = g.embed(g.require("token_embd.weight"));
    for (int32_t il = 0; il < n_layer; ++il) {
      const bool sliding = swa_period > 0 && il % swa_period < swa_period - 1;
      archreg::plugin::AttentionConfig attn;
      attn.n_head = g.hparam("n_head", il);
      attn.n_head_kv = g.hparam("n_head_kv", il);
      attn.head_dim = g.hparam("n_rot");
      attn.rope = archreg::plugin::standard_rope(g, ARCHREG_ROPE_NEOX, static_cast<int32_t>(g.hparam("n_rot")));
      if (sliding && g.has_hparam("rope_freq_base_swa")) attn.rope.freq_base = g.hparam_f("rope_freq_base_swa");
      attn.attention.sinks = g.require("attn_sinks.weight", il);
      attn.attention.sliding_window = sliding ? static_cast<int32_t>(g.hparam("n_swa")) : 0;
      Tensor h = g.rms_norm(x, g.require("attn_norm.weight", il), eps);
      x = g.add(x, archreg::plugin::self_attention(g, il, h, attn));
      h = g.rms_norm(x, g.require("post_attention_norm.weight", il), eps);
      archreg_moe_options o{};
      o.n_expert_used = static_cast<int32_t>(g.hparam("n_expert_used"));
      o.gating = ARCHREG_GATING_SOFTMAX_TOPK;
      o.glu.activation = ARCHREG_ACT_SWIGLU_OAI;
      x = g.named(g.add(x, g.named(archreg::plugin::routed_experts(g, il, h, o), "ffn_out", il)), "l_out", il);
    }
    archreg::plugin::standard_logits(g, x, eps);
  });
}

}  // namespace

ARCHREG_DEFINE_PLUGIN("gpt-oss", nullptr, build, "attn_qkv", "ffn_gate_up_exps")
