// The llama plugin: LLaMA-family decoders, dense (SmolLM2, Llama 3, Mistral) or Mixtral-style
// MoE (expert_count > 0). Reads like llama.cpp's src/models/llama.cpp: norm -> attention ->
// residual -> norm -> FFN or MoE -> residual, then the output head.
#include "plugin/export.hpp"
#include "plugin/graph.hpp"

namespace {

using archreg::plugin::Graph;
using archreg::plugin::Tensor;

int build(const archreg_graph_api_v2* api, archreg_graph* graph, const char*) {
  return archreg::plugin::guarded_build(api, graph, [](const Graph& g) {
    const int32_t n_layer = static_cast<int32_t>(g.hparam("n_layer"));
    const int64_t n_expert = g.hparam("n_expert");
    const float eps = g.hparam_f("rms_eps", 1e-5);
    Tensor x = g.embed(g.require("token_embd.weight"));
    for (int32_t il = 0; il < n_layer; ++il) {
      archreg::plugin::AttentionConfig attn = archreg::plugin::standard_attention(g, il, ARCHREG_ROPE_NORMAL, eps);
      attn.rope.freq_factors = g.weight("rope_freqs.weight");
      Tensor h = g.rms_norm(x, g.require("attn_norm.weight", il), eps);
      x = g.add(x, archreg::plugin::self_attention(g, il, h, attn));
      h = g.rms_norm(x, g.require("ffn_norm.weight", il), eps);
      if (n_expert == 0) {
        h = g.ffn(h, archreg::plugin::ffn_weights(g, il));
      } else {
        archreg_moe_weights moe{};
        moe.router = g.require("ffn_gate_inp.weight", il);
        moe.experts = archreg::plugin::ffn_weights(g, il, "_exps");
        archreg_moe_options o{};
        o.n_expert_used = static_cast<int32_t>(g.hparam("n_expert_used"));
        o.gating = ARCHREG_GATING_SOFTMAX;
        o.normalize = 1;
        h = g.moe(h, moe, o);
      }
      x = g.named(g.add(x, g.named(h, "ffn_out", il)), "l_out", il);
    }
    archreg::plugin::standard_logits(g, x, eps);
  });
}

}  // namespace

ARCHREG_DEFINE_PLUGIN("llama", nullptr, build, "attn_qkv", "ffn_gate_up_exps")
