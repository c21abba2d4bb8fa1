// Opening a model to run it. Every refusal happens here, before a weight is touched: an
// unknown or validate-only architecture, a file that does not validate, a fused form the
// plugin's forward cannot run. What is left is a set of *logical* tensors — the spec's names
// and shapes — each a strided view over the stored bytes, whether the file stores that tensor
// on its own or inside a fused one. The forward pass asks for "blk.3.ffn_gate_exps.weight"
// and never learns which it was.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "gguf/reader.hpp"
#include "hparams/hparams.hpp"
#include "registry/registry.hpp"
#include "report/finding.hpp"
#include "report/refusal.hpp"
#include "spec/spec.hpp"

namespace archreg::runtime {

// Why a model cannot be run; findings are listed when validation refused it.
using LoadError = report::Refusal;

// Bytes a backend places once: a tensor as the file stores it (the CPU backend uses it in place
// in the mapping; a device backend uploads it), or a fused tensor built by --fuse-at-load.
// Logical tensors refer to their storage by (storage, offset), so the parts of one fused
// storage are one buffer wherever the backend puts it.
struct Storage {
  enum class Kind { kMapped, kFusedAtLoad };
  std::string name;  // the stored tensor's GGUF name; fused at load: the fused tensor's name
  Kind kind = Kind::kMapped;
  // What its tensors are for (the spec's role; a fused storage's parts share it): a backend
  // places a storage by it (Backend::place).
  spec::Role role = spec::Role::kMatrix;
  const std::byte* host = nullptr;  // its bytes in host memory (the mapping, or a load-time buffer)
  uint64_t bytes = 0;
};

// A logical tensor: ggml-style extents and byte strides into one storage.
struct TensorView {
  std::string name;  // logical GGUF name, e.g. "blk.3.ffn_up_exps.weight"
  int32_t type = 0;
  uint32_t n_dims = 0;
  std::array<uint64_t, 4> ne{1, 1, 1, 1};
  std::array<uint64_t, 4> nb{0, 0, 0, 0};  // bytes between consecutive blocks / rows / ...
  const Storage* storage = nullptr;        // owned by the Model
  uint64_t offset = 0;                     // bytes from the storage's start to element 0
  spec::Role role = spec::Role::kMatrix;   // the spec's role of the tensor
  // The weight's `.scale` sidecar (llama.cpp's per-matrix scale, NVFP4's second level: the
  // product is multiplied by it; F32, one value per matrix), when the file stores one.
  const TensorView* scale = nullptr;
  // The file stores a sidecar of this weight the runtime has no meaning for (a suffix other than
  // `scale` and `input_scale`, which llama.cpp reads and its graphs do not use).
  bool has_unknown_sidecar = false;

  const std::byte* data() const { return storage->host + offset; }

  bool contiguous() const;
  uint64_t n_bytes() const;  // bytes of the logical tensor, as if contiguous
  // Copies the logical tensor's bytes, gathering strided rows, into `out` (n_bytes()).
  void gather(std::span<std::byte> out) const;
};

struct OpenOptions {
  // Fuse the groups the plugin runs fused (gate+up experts, Q/K/V) in memory at load when the
  // file stores them unfused: the speed of the fused path without rewriting the file.
  bool fuse_at_load = false;
};

class Model {
 public:
  static Model open(const std::filesystem::path& file, registry::Registry& registry, OpenOptions options = {});

  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const gguf::Reader& reader() const { return *reader_; }
  const spec::Spec& spec() const { return *spec_; }
  const plugin::Plugin& plugin() const { return *plugin_; }
  // Every logical tensor present, in spec order (global tensors, then layer by layer).
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // Every storage the logical tensors refer to, each once: what a backend places.
  const std::vector<std::unique_ptr<Storage>>& storages() const { return storages_; }
  // nullptr when absent (optional or tied tensors).
  const TensorView* find(std::string_view logical_name) const;
  // The logical tensor `base.suffix` of `layer` (< 0: a global tensor), resolved once at load;
  // nullptr when absent.
  const TensorView* weight(std::string_view name, int32_t layer) const;
  int32_t n_layers() const { return n_layers_; }
  // Whether the file leaves this layer out (a range the spec's optional_layers allow to be
  // absent, e.g. the decoder layers of an MTP-only file).
  bool layer_absent(int32_t layer) const {
    return layer >= 0 && static_cast<size_t>(layer) < absent_layers_.size() && absent_layers_[static_cast<size_t>(layer)];
  }
  const std::string& arch() const { return arch_; }

  // Hyperparameters of the spec for this file. `layer` < 0: the global value.
  std::optional<int64_t> hparam_int(std::string_view name, int32_t layer) const;
  std::optional<double> hparam_float(std::string_view name, int32_t layer) const;
  std::optional<std::string> hparam_string(std::string_view name) const;
  // Bytes of the in-memory copies made by fuse_at_load (0 without it).
  uint64_t fused_at_load_bytes() const { return fused_bytes_; }

 private:
  Model() = default;
  void fuse_in_memory();
  void index_tensors();
  std::unique_ptr<gguf::Reader> reader_;
  const spec::Spec* spec_ = nullptr;
  const plugin::Plugin* plugin_ = nullptr;
  std::vector<std::unique_ptr<Storage>> storages_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  // [layer + 1] -> spec tensor name ("attn_q.weight") -> index into tensors_
  std::vector<std::map<std::string, size_t, std::less<>>> by_layer_;
  std::unique_ptr<hparams::Hparams> hparams_;
  std::string arch_;
  int32_t n_layers_ = 0;
  std::vector<bool> absent_layers_;
  std::vector<std::unique_ptr<std::byte[]>> fused_storage_;
  uint64_t fused_bytes_ = 0;
};

}  // namespace archreg::runtime
