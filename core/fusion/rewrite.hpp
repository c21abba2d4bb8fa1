// Lossless fuse and unfuse of whole files: a plan (which stored tensors become which) made
// from the fusion rules, then one streaming pass that moves bytes without decoding them.
//
// Because a quantized block never crosses a row, concatenating along ne1 or ne2 is a byte
// re-arrangement: per slice above the axis, part 1's rows, then part 2's, ... Fusing and
// unfusing are the same description read in two directions, so unfuse(fuse(x)) == x byte for
// byte when x stores each group's parts next to each other.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "gguf/reader.hpp"
#include "plugin/host.hpp"
#include "report/finding.hpp"
#include "report/refusal.hpp"
#include "spec/spec.hpp"

namespace archreg::fusion {

enum class Direction { kFuse, kUnfuse };

// Metadata key (an array of strings) that fuse writes when the input's tensor order is not the
// one unfuse would produce by itself (real files store attn_k before attn_q, say): the input's
// tensor names in file order. unfuse consumes it — orders its output by it and drops it — when
// it names exactly the output's tensors, so unfuse(fuse(x)) is x byte for byte whatever x's
// order. A later fuse carries an existing key over unchanged: it describes the first input.
inline constexpr std::string_view kUnfusedOrderKey = "archreg.unfused_tensor_order";

// A refusal: nothing is written. Findings are listed when the input does not validate.
using RewriteError = report::Refusal;

struct RewriteRequest {
  Direction direction = Direction::kFuse;
  // Groups to rewrite. Empty: fuse every group the plugin runs fused (and, with `consumer`,
  // that consumer loads) that the file stores unfused; unfuse every group stored fused.
  std::vector<std::string> groups;
  // Only produce fused forms this loader is known to accept (the spec's `consumers`).
  std::optional<std::string> consumer;
};

// One output tensor and where its bytes come from.
struct OutputTensor {
  enum class Kind { kCopy, kConcat, kSlice };
  Kind kind = Kind::kCopy;
  std::string name;
  int32_t type = 0;
  std::vector<uint64_t> shape;
  std::vector<const gguf::TensorInfo*> sources;  // copy and slice: one; concat: the parts in order
  int axis = 0;                                  // concat and slice
  uint64_t offset = 0;                           // slice: first element along the axis
};

struct RewritePlan {
  Direction direction = Direction::kFuse;
  std::vector<std::string> groups;  // the groups rewritten
  std::vector<OutputTensor> tensors;
  uint64_t data_bytes = 0;         // bytes of tensor data to move
  std::vector<std::string> notes;  // for people: e.g. which loaders accept the fused forms
  // fuse: write kUnfusedOrderKey with these names (empty: not needed, or carried over).
  std::vector<std::string> record_order;
  // unfuse: the output is ordered by kUnfusedOrderKey, which is not copied.
  bool drop_order_key = false;
};

// Decides what to write, refusing (RewriteError) everything that cannot be done losslessly or
// that a consumer could not run: an input that does not validate, groups the spec does not
// declare or the plugin cannot run fused, input already fused (fuse) or not fused (unfuse),
// parts of one group stored in different types.
RewritePlan plan_rewrite(const gguf::Reader& input, const spec::Spec& spec, const plugin::Plugin& plugin, const RewriteRequest& request);

struct ExecuteOptions {
  bool overwrite = false;
  bool sync = true;  // fsync the output before naming it (gguf::WriterOptions::sync)
  // Called as bytes are moved (done, total); may be empty.
  std::function<void(uint64_t, uint64_t)> progress;
  // Polled between pieces of work; returning true abandons the write (nothing is left).
  std::function<bool()> cancelled;
  // Runs on the finished, synced, not yet named output; an exception aborts the commit.
  std::function<void(const std::filesystem::path&)> verify;
};

// Writes the plan to `output` in one streaming pass with bounded memory. Throws gguf::Error
// (I/O, disk full) or RewriteError (cancelled, verification failed); either way no output.
void execute_rewrite(const RewritePlan& plan, const gguf::Reader& input, const std::filesystem::path& output,
                     const ExecuteOptions& options);

}  // namespace archreg::fusion
