// The llama4 plugin: validate-only (no build function). Llama 4's chunked attention (each
// position attends only within its 8192-token chunk) and the position-dependent attention
// temperature of its NoPE layers have no block in the host's graph API, so files are validated
// (and fused/unfused) but not run; `archreg run` refuses them at load, naming the reason.
#include "plugin/export.hpp"

ARCHREG_DEFINE_PLUGIN("llama4", nullptr, nullptr, "attn_qkv", "ffn_gate_up_exps")
