// The minimax plugin: MiniMax-M2. As llama.cpp's src/models/minimax-m2.cpp: RMS norm -> attention
// (RMS norms over the whole Q and K projections, partial NeoX RoPE over rope.dimension_count of
// each head) -> residual -> RMS norm -> routed experts (expert_gating_func, exp_probs_b for
// selection, normalised top-k weights) -> residual.
#include "plugin/export.hpp"
#include "plugin/graph.hpp"

namespace {

using archreg::plugin::Graph;
using archreg::plugin::Tensor;

int build(const archreg_graph_api_v2* api, archreg_graph* graph, const char*) {
  return archreg::plugin::guarded_build(api, graph, [](const Graph& g) {
    const int32_t n_layer = static_cast<int32_t>(g.hparam("n_layer"));
    const float eps = g.hparam_f("rms_eps", 1e-6);
    Tensor x = g.embed(g.require("token_embd.weight"));
    for (int32_t il = 0; il < n_layer; ++il) {
      archreg::plugin::AttentionConfig attn = archreg::plugin::standard_attention(g, il, ARCHREG_ROPE_NEOX, eps);
      attn.qk_norm_whole = true;
      Tensor h = g.rms_norm(x, g.require("attn_norm.weight", il), eps);
      x = g.add(archreg::plugin::self_attention(g, il, h, attn), x);
      h = g.rms_norm(x, g.require("ffn_norm.weight", il), eps);
      archreg_moe_options o{};
      o.n_expert_used = static_cast<int32_t>(g.hparam("n_expert_used"));
      o.gating = archreg::plugin::gating_from_key(g.hparam("expert_gating_func"), ARCHREG_GATING_SIGMOID);
      o.normalize = 1;
      x = g.named(g.add(g.named(archreg::plugin::routed_experts(g, il, h, o), "ffn_out", il), x), "l_out", il);
    }
    archreg::plugin::standard_logits(g, x, eps);
  });
}

}  // namespace

ARCHREG_DEFINE_PLUGIN("minimax", nullptr, build, "attn_qkv", "ffn_gate_up_exps")
