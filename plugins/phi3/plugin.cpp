// The phi3 plugin: Phi-3 / Phi-4 dense decoders. As llama.cpp's src/models/phi3.cpp: RMS norm ->
// attention (NeoX RoPE, Q/K/V usually stored fused) -> residual -> RMS norm -> SwiGLU over the one
// ffn_up tensor (its first n_ff rows are the gate, the next n_ff the up projection) -> down ->
// residual. llama.cpp ignores the sliding_window key (Phi SWA is disabled upstream), and so does
// this forward. LongRoPE files (rope_factors_long/short: which factors apply depends on the
// context size) are refused at load.
#include "plugin/export.hpp"
#include "plugin/graph.hpp"

namespace {

using archreg::plugin::Graph;
using archreg::plugin::Tensor;

int build(const archreg_graph_api_v2* api, archreg_graph* graph, const char*) {
  return archreg::plugin::guarded_build(api, graph, [](const Graph& g) {
    const int32_t n_layer = static_cast<int32_t>(g.hparam("n_layer"));
    const float eps = g.hparam_f("rms_eps", 1e-5);
    if (g.weight("rope_factors_long.weight") != nullptr || g.weight("rope_factors_short.weight") != nullptr) {
      g.fail("LongRoPE factors (rope_factors_long/short, Phi-3-*-128k / Phi-3.5) are not supported by the phi3 forward pass");
      return;
    }
    Tensor x = g.embed(g.require("token_embd.weight"));
    for (int32_t il = 0; il < n_layer; ++il) {
      archreg::plugin::AttentionConfig attn = archreg::plugin::standard_attention(g, il, ARCHREG_ROPE_NEOX, eps);
      Tensor h = g.rms_norm(x, g.require("attn_norm.weight", il), eps);
      x = g.add(archreg::plugin::self_attention(g, il, h, attn), x);
      h = g.rms_norm(x, g.require("ffn_norm.weight", il), eps);
      const int64_t n_ff = g.hparam("n_ff", il);
      Tensor gate_up = g.matmul(g.require("ffn_up.weight", il), h);  // [2 n_ff, tokens]
      Tensor gate = g.slice(gate_up, 0, n_ff);
      Tensor act = g.mul(g.mul(gate, g.sigmoid(gate)), g.slice(gate_up, n_ff, n_ff));  // silu(gate) * up
      Tensor ffn = g.named(g.matmul(g.require("ffn_down.weight", il), act), "ffn_out", il);
      x = g.named(g.add(x, ffn), "l_out", il);
    }
    archreg::plugin::standard_logits(g, x, eps);
  });
}

}  // namespace

ARCHREG_DEFINE_PLUGIN("phi3", nullptr, build, "attn_qkv")
