// The hunyuan plugin: Hunyuan-A13B (hunyuan-moe). As llama.cpp's src/models/hunyuan-moe.cpp: RMS
// norm -> attention (NeoX RoPE, then per-head Q/K RMS norms) -> residual -> RMS norm -> the shared
// expert plus softmax-routed experts with normalised top-k weights -> residual.
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
      attn.qk_norm_after_rope = true;
      Tensor h = g.rms_norm(x, g.require("attn_norm.weight", il), eps);
      x = g.add(archreg::plugin::self_attention(g, il, h, attn), x);
      h = g.rms_norm(x, g.require("ffn_norm.weight", il), eps);
      archreg_moe_options o{};
      o.n_expert_used = static_cast<int32_t>(g.hparam("n_expert_used"));
      o.gating = ARCHREG_GATING_SOFTMAX;
      o.normalize = 1;
      Tensor ffn = g.add(archreg::plugin::routed_experts(g, il, h, o), g.ffn(h, archreg::plugin::ffn_weights(g, il, "_shexp")));
      x = g.named(g.add(g.named(ffn, "ffn_out", il), x), "l_out", il);
    }
    archreg::plugin::standard_logits(g, x, eps);
  });
}

}  // namespace

ARCHREG_DEFINE_PLUGIN("hunyuan", nullptr, build, "attn_qkv", "ffn_gate_up_exps")
