// The toy MoE architecture's plugin (its spec: tests/fixtures/toy-specs/toymoe.yaml): a whole
// forward pass in a few lines of shared blocks. It runs the gate+up experts fused but not
// Q/K/V, so a file with attn_qkv fused must be refused at load.
#include "plugin/export.hpp"
#include "plugin/graph.hpp"

namespace {

int build(const archreg_graph_api_v2* api, archreg_graph* graph, const char*) {
  return archreg::plugin::guarded_build(api, graph, [](const archreg::plugin::Graph& g) {
    const float eps = g.hparam_f("rms_eps", 1e-6);
    archreg::plugin::Tensor x = g.embed(g.require("token_embd.weight"));
    for (int32_t il = 0; il < static_cast<int32_t>(g.hparam("n_layer")); ++il) {
      archreg::plugin::AttentionConfig attn;
      attn.n_head = g.hparam("n_head", il);
      attn.n_head_kv = g.hparam("n_head_kv", il);
      attn.head_dim = g.hparam("head_dim");
      attn.rope = archreg::plugin::standard_rope(g, ARCHREG_ROPE_NEOX, static_cast<int32_t>(attn.head_dim));
      x = g.add(x, archreg::plugin::self_attention(g, il, g.rms_norm(x, g.require("attn_norm.weight", il), eps), attn));
      archreg_moe_options o{};
      o.n_expert_used = static_cast<int32_t>(g.hparam("n_expert_used"));
      o.normalize = 1;
      x = g.add(x, archreg::plugin::routed_experts(g, il, g.rms_norm(x, g.require("ffn_norm.weight", il), eps), o));
    }
    archreg::plugin::standard_logits(g, x, eps);
  });
}

}  // namespace

ARCHREG_DEFINE_PLUGIN("toymoe", nullptr, build, "ffn_gate_up_exps")
