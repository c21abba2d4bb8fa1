// `archreg run [MODEL] --tokens IDS [-n N] ...`: evaluates a prompt and generates tokens on the
// CUDA or CPU backend (--backend); `archreg bench [MODEL]`: prompt-processing and generation speed in the
// style of the usual benchmark table. Every refusal (a file that cannot run, ids out of range, a context too small, a model
// larger than memory, an output that cannot be written) comes before any work, exit status 1.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>

#include "cli/commands.hpp"
#include "cli/run_support.hpp"
#include "runtime/builder.hpp"
#include "runtime/session.hpp"
#include "text/tokenizer.hpp"

namespace archreg::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct RunOptions {
  std::string model;
  std::string tokens;
  std::string prompt;
  int n_predict = 32;
  std::string backend = "auto";
  int threads = 0;
  int64_t ctx = 0;
  uint64_t seed = 0;
  Sampling sampling;
  std::string dump_logits;
  bool fuse_at_load = false;
  RegistryOptions registry;
};

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::string item;
  std::istringstream in(text);
  while (in >> std::ws && !in.eof()) {
    if (in.peek() == ',') {
      in.get();
      continue;
    }
    long long value = 0;
    if (!(in >> value)) throw runtime::RunError(fmt::format("--tokens: '{}' is not a list of integer token ids (e.g. 1,2,3)", text));
    if (value < INT32_MIN || value > INT32_MAX) throw runtime::RunError(fmt::format("--tokens: id {} is out of range", value));
    ids.push_back(static_cast<int32_t>(value));
  }
  if (ids.empty()) throw runtime::RunError("--tokens: no token ids given");
  return ids;
}

int run(const RunOptions& o) {
  const std::string path = o.model.empty() ? default_model() : o.model;
  registry::Registry registry = make_registry(o.registry);
  runtime::OpenOptions open;
  open.fuse_at_load = o.fuse_at_load;
  const runtime::Model model = runtime::Model::open(path, registry, open);
  // A text prompt is tokenized from the file's own vocabulary, as llama.cpp does (BOS as the
  // metadata says, special-token text parsed); the reply then streams as text.
  const bool text_mode = !o.prompt.empty();
  if (!text_mode && o.tokens.empty()) throw runtime::RunError("give a prompt: -p TEXT, or --tokens IDS");
  std::optional<text::Tokenizer> tokenizer;
  if (text_mode) tokenizer.emplace(text::Tokenizer::from_gguf(model.reader()));
  const std::vector<int32_t> prompt = text_mode ? tokenizer->encode(o.prompt, true, true) : parse_ids(o.tokens);
  if (prompt.empty()) throw runtime::RunError("the prompt gives no tokens");
  runtime::SessionOptions options;
  options.backend = o.backend;
  options.threads = o.threads;
  options.n_ctx = o.ctx;
  options.all_logits = !o.dump_logits.empty();
  check_fits(model, prompt.size() + static_cast<size_t>(std::max(o.n_predict, 0)), options);
  LogitsFile dump(o.dump_logits);  // refuses an unwritable path before any work
  runtime::Session session(model, options);
  const auto prefill_start = Clock::now();
  std::span<const float> logits = session.eval(prompt);
  const double prefill_s = seconds_since(prefill_start);
  if (!o.dump_logits.empty()) {
    dump.write(logits, prompt.size(), static_cast<size_t>(session.n_vocab()));
    logits = logits.subspan((prompt.size() - 1) * static_cast<size_t>(session.n_vocab()));
  }
  Sampler sampler(o.sampling, o.seed);
  std::vector<int32_t> stop = end_of_generation_ids(model);
  if (tokenizer) stop.assign(tokenizer->eog_ids().begin(), tokenizer->eog_ids().end());
  std::optional<text::StreamDecoder> stream;
  if (tokenizer) stream.emplace(*tokenizer);
  std::vector<int32_t> generated;
  const auto decode_start = Clock::now();
  for (int i = 0; i < o.n_predict; ++i) {
    const int32_t next = sampler.sample(logits.first(static_cast<size_t>(session.n_vocab())));
    generated.push_back(next);
    const bool end = std::find(stop.begin(), stop.end(), next) != stop.end();
    if (stream && !end) {
      const std::string piece = stream->feed(next);
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
    if (end || i + 1 == o.n_predict) break;
    const int32_t one[1] = {next};
    logits = session.eval(one);
  }
  const double decode_s = seconds_since(decode_start);
  if (stream) {
    fmt::print("{}\n", stream->flush());
  } else {
    std::string line;
    for (int32_t id : generated) line += fmt::format("{}{}", line.empty() ? "" : " ", id);
    fmt::print("{}\n", line);
  }
  std::fflush(stdout);
  const size_t decoded = generated.empty() ? 0 : generated.size() - 1;  // the first came from the prefill
  fmt::print(stderr, "archreg run: {} on {}\n", model.arch(), session.backend().name());
  fmt::print(stderr, "prefill: {} tokens in {:.1f} ms, {:.2f} tokens/s\n", prompt.size(), prefill_s * 1e3,
             static_cast<double>(prompt.size()) / prefill_s);
  if (decoded > 0)
    fmt::print(stderr, "decode:  {} tokens in {:.1f} ms, {:.2f} tokens/s\n", decoded, decode_s * 1e3,
               static_cast<double>(decoded) / decode_s);
  return kExitOk;
}

}  // namespace

void add_run_command(CLI::App& app, int& exit_code) {
  auto* command = app.add_subcommand("run", "Evaluate a prompt (text or token ids) and generate tokens");
  auto o = std::make_shared<RunOptions>();
  command->add_option("model", o->model, "GGUF model (default: the embedded SmolLM2-135M-Instruct)");
  auto* tokens = command->add_option("--tokens", o->tokens, "Prompt token ids, e.g. 1,2,3 (generated ids are printed)");
  auto* prompt =
      command->add_option("-p,--prompt", o->prompt, "Prompt text, tokenized with the model's vocabulary (the reply streams as text)");
  tokens->excludes(prompt);
  command->add_option("-n,--n-predict", o->n_predict, "Tokens to generate; 0 only evaluates the prompt")->check(CLI::NonNegativeNumber);
  command->add_option("-t,--threads", o->threads, "CPU threads (default: every core)")->check(CLI::NonNegativeNumber);
  add_backend_option(*command, o->backend);
  command->add_option("-c,--ctx", o->ctx, "Context size in tokens (default: min(trained context, 4096))")->check(CLI::NonNegativeNumber);
  command->add_option("-s,--seed", o->seed, "Sampling seed");
  add_sampling_options(*command, o->sampling);
  command->add_option("--dump-logits", o->dump_logits,
                      "Write the logits of every prompt position to a .npy file (float32 [n_prompt, n_vocab])");
  command->add_flag("--fuse-at-load", o->fuse_at_load, "Fuse unfused Q/K/V and gate+up groups in memory at load");
  add_registry_options(*command, o->registry);
  command->callback([o, &exit_code] { exit_code = guard_run("run", [&] { return run(*o); }); });
}

}  // namespace archreg::cli
