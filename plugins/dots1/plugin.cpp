// The dots1 plugin: dots.llm1. As llama.cpp's src/models/dots1.cpp: RMS norm -> attention (per-head
// Q/K RMS norms, NeoX RoPE) -> residual -> RMS norm -> a SwiGLU FFN in the leading dense layers,
// else routed experts (expert_gating_func, exp_probs_b for selection, weights normalised when
// expert_weights_norm, times expert_weights_scale) plus the shared experts -> residual.
#include "plugin/export.hpp"
#include "plugin/graph.hpp"

namespace {

using archreg::plugin::Graph;
using archreg::plugin::Tensor;

int build(const archreg_graph_api_v2* api, archreg_graph* graph, const char*) {
  return archreg::plugin::guarded_build(api, graph, [](const Graph& g) {
    const int32_t n_layer = static_cast<int32_t>(g.hparam("n_layer"));
    const int64_t n_dense_lead = g.hparam("n_dense_lead");
    const float eps = g.hparam_f("rms_eps", 1e-5);
    const archreg_moe_options moe = archreg::plugin::moe_options_from_keys(g, ARCHREG_GATING_SIGMOID);
    Tensor x = g.embed(g.require("token_embd.weight"));
    for (int32_t il = 0; il < n_layer; ++il) {
      archreg::plugin::AttentionConfig attn = archreg::plugin::standard_attention(g, il, ARCHREG_ROPE_NEOX, eps);
      Tensor h = g.rms_norm(x, g.require("attn_norm.weight", il), eps);
      x = g.add(archreg::plugin::self_attention(g, il, h, attn), x);
      h = g.rms_norm(x, g.require("ffn_norm.weight", il), eps);
      Tensor ffn = archreg::plugin::dense_lead_or_experts(g, il, h, n_dense_lead, moe);
      x = g.named(g.add(g.named(ffn, "ffn_out", il), x), "l_out", il);
    }
    archreg::plugin::standard_logits(g, x, eps);
  });
}

}  // namespace

ARCHREG_DEFINE_PLUGIN("dots1", nullptr, build, "attn_qkv", "ffn_gate_up_exps")
