// `archreg bench [MODEL] [-p 512] [-n 128] [-r 3] [--threads T] [--fused both|on|off]`: prompt
// processing (one batch of p tokens) and generation (n tokens one at a time after it) in
// tokens/s, mean ± standard deviation over r repetitions, as a pp/tg table. `--fused both` runs
// the file as stored and fused in memory at load in one run, so the two can be compared.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>

#include "cli/commands.hpp"
#include "cli/run_support.hpp"
#include "runtime/session.hpp"

namespace archreg::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct BenchOptions {
  std::string model;
  int n_prompt = 512;
  int n_gen = 128;
  int repetitions = 3;
  std::string backend = "auto";
  int threads = 0;
  std::string fused = "off";
  RegistryOptions registry;
};

struct Stats {
  double mean = 0;
  double stddev = 0;
};

Stats stats(const std::vector<double>& rates) {
  Stats s;
  for (double r : rates) s.mean += r;
  s.mean /= static_cast<double>(rates.size());
  for (double r : rates) s.stddev += (r - s.mean) * (r - s.mean);
  s.stddev = rates.size() > 1 ? std::sqrt(s.stddev / static_cast<double>(rates.size() - 1)) : 0.0;
  return s;
}

void bench_one(const BenchOptions& o, const std::string& path, bool fuse_at_load, std::string& table) {
  registry::Registry registry = make_registry(o.registry);
  runtime::OpenOptions open;
  open.fuse_at_load = fuse_at_load;
  const runtime::Model model = runtime::Model::open(path, registry, open);
  runtime::SessionOptions options;
  options.backend = o.backend;
  options.threads = o.threads;
  options.n_ctx = o.n_prompt + o.n_gen;
  options.n_batch = std::max(o.n_prompt, 1);
  check_fits(model, static_cast<size_t>(o.n_prompt + o.n_gen), options);
  runtime::Session session(model, options);
  std::mt19937 rng(42);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(session.n_vocab()) - 1);
  std::vector<int32_t> prompt(static_cast<size_t>(o.n_prompt));
  for (int32_t& t : prompt) t = token(rng);
  std::vector<double> pp;
  std::vector<double> tg;
  // One warm-up round (page faults of the mapping, graph builds), then the measured ones.
  for (int rep = -1; rep < o.repetitions; ++rep) {
    session.reset();
    if (o.n_prompt > 0) {
      const auto start = Clock::now();
      session.eval(prompt);
      const double s = std::chrono::duration<double>(Clock::now() - start).count();
      if (rep >= 0) pp.push_back(o.n_prompt / s);
    }
    if (o.n_gen > 0) {
      const auto start = Clock::now();
      int32_t next = 1;
      for (int i = 0; i < o.n_gen; ++i) {
        const int32_t one[1] = {next};
        session.eval(one);
        next = token(rng);
      }
      const double s = std::chrono::duration<double>(Clock::now() - start).count();
      if (rep >= 0) tg.push_back(o.n_gen / s);
    }
  }
  const std::string name = std::filesystem::path(path).filename().string();
  const std::string layout = fuse_at_load ? "fused at load" : "as stored";
  auto row = [&](const std::string& test, const std::vector<double>& rates) {
    const Stats s = stats(rates);
    table += fmt::format("| {:<32} | {:<10} | {:>7} | {:<13} | {:>6} | {:>10.2f} ± {:<7.2f} |\n", name, model.arch(),
                         session.backend().name().substr(0, session.backend().name().find(' ')), layout, test, s.mean, s.stddev);
  };
  if (!pp.empty()) row(fmt::format("pp{}", o.n_prompt), pp);
  if (!tg.empty()) row(fmt::format("tg{}", o.n_gen), tg);
  fmt::print(stderr, "archreg bench: {} {} on {}, KV cache {}\n", name, layout, session.backend().name(),
             human_bytes(static_cast<double>(session.kv_bytes())));
}

int bench(const BenchOptions& o) {
  const std::string path = o.model.empty() ? default_model() : o.model;
  std::string table =
      fmt::format("| {:<32} | {:<10} | {:>7} | {:<13} | {:>6} | {:>20} |\n", "model", "arch", "backend", "layout", "test", "t/s");
  table += fmt::format("| {:-<32} | {:-<10} | {:->7} | {:-<13} | {:->6} | {:->20} |\n", "", "", "", "", "", "");
  if (o.fused == "off" || o.fused == "both") bench_one(o, path, false, table);
  if (o.fused == "on" || o.fused == "both") bench_one(o, path, true, table);
  std::fwrite(table.data(), 1, table.size(), stdout);
  return kExitOk;
}

}  // namespace

void add_bench_command(CLI::App& app, int& exit_code) {
  auto* command = app.add_subcommand("bench", "Prompt-processing and generation speed (tokens/s), as stored and fused at load");
  auto o = std::make_shared<BenchOptions>();
  command->add_option("model", o->model, "GGUF model (default: the embedded SmolLM2-135M-Instruct)");
  command->add_option("-p,--n-prompt", o->n_prompt, "Prompt tokens processed as one batch")->check(CLI::NonNegativeNumber);
  command->add_option("-n,--n-gen", o->n_gen, "Tokens generated one at a time")->check(CLI::NonNegativeNumber);
  command->add_option("-r,--repetitions", o->repetitions, "Measured repetitions (after one warm-up)")->check(CLI::PositiveNumber);
  command->add_option("-t,--threads", o->threads, "CPU threads (default: every core)")->check(CLI::NonNegativeNumber);
  add_backend_option(*command, o->backend);
  command->add_option("--fused", o->fused, "Run the file as stored (off), fused in memory at load (on), or both")
      ->check(CLI::IsMember({"off", "on", "both"}));
  add_registry_options(*command, o->registry);
  command->callback([o, &exit_code] { exit_code = guard_run("bench", [&] { return bench(*o); }); });
}

}  // namespace archreg::cli
