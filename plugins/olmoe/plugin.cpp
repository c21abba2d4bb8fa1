// The olmoe plugin: OLMoE, as llama.cpp's src/models/olmoe.cpp — Q/K RMS norms over the whole
// projection, NeoX RoPE, softmax routing without renormalisation.
#include "plugin/export.hpp"
#include "plugin/graph.hpp"

namespace {

using archreg::plugin::Graph;
using archreg::plugin::Tensor;

int build(const archreg_graph_api_v2* api, archreg_graph* graph, const char*) {
  return archreg::plugin::guarded_build(api, graph, [](const Graph& g) {
    const int32_t n_layer = static_cast<int32_t>(g.hparam("n_layer"));
    const float eps = g.hparam_f("rms_eps", 1e-5);
    Tensor x = g.embed(g.require("token_embd.weight"));
    for (int32_t il = 0; il < n_layer; ++il) {
      archreg::plugin::AttentionConfig attn = archreg::plugin::standard_attention(g, il, ARCHREG_ROPE_NEOX, eps);
      attn.qk_norm_whole = true;
      Tensor h = g.rms_norm(x, g.require("attn_norm.weight", il), eps);
      x = g.add(x, archreg::plugin::self_attention(g, il, h, attn));
      h = g.rms_norm(x, g.require("ffn_norm.weight", il), eps);
      archreg_moe_options o{};
      o.n_expert_used = static_cast<int32_t>(g.hparam("n_expert_used"));
      o.gating = ARCHREG_GATING_SOFTMAX;
      x = g.named(g.add(x, g.named(archreg::plugin::routed_experts(g, il, h, o), "ffn_out", il)), "l_out", il);
    }
    archreg::plugin::standard_logits(g, x, eps);
  });
}

}  // namespace

ARCHREG_DEFINE_PLUGIN("olmoe", nullptr, build, "attn_qkv", "ffn_gate_up_exps")
