// `archreg fuse IN OUT` and `archreg unfuse IN OUT`: lossless conversion between a file's
// fused and unfused layouts, streamed, verified, and published atomically.
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>

#include "cli/commands.hpp"
#include "fusion/rewrite.hpp"
#include "gguf/reader.hpp"
#include "validate/validate.hpp"

namespace archreg::cli {
namespace {

constexpr int kExitInterrupted = 130;

std::atomic<bool> g_interrupted{false};
extern "C" void on_signal(int) {
  g_interrupted.store(true);
}

// Turns SIGINT/SIGTERM/SIGHUP into a flag the copy loop polls, for as long as it lives, so an
// interrupted run unwinds normally and leaves no output.
class InterruptGuard {
 public:
  InterruptGuard() {
    g_interrupted.store(false);
    struct sigaction action {};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    for (size_t i = 0; i < std::size(kSignals); ++i) sigaction(kSignals[i], &action, &previous_[i]);
  }
  ~InterruptGuard() {
    for (size_t i = 0; i < std::size(kSignals); ++i) sigaction(kSignals[i], &previous_[i], nullptr);
  }
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

 private:
  static constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
  struct sigaction previous_[3]{};
};

// A one-line progress bar on a terminal: bytes, rate, ETA. Silent when stderr is not a terminal.
class Progress {
 public:
  explicit Progress(std::string verb) : verb_(std::move(verb)), enabled_(isatty(STDERR_FILENO) != 0), start_(Clock::now()) {}
  ~Progress() {
    if (shown_) std::fputs("\r\033[K", stderr);
  }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void update(uint64_t done, uint64_t total) {
    if (!enabled_) return;
    const auto now = Clock::now();
    if (shown_ && now - last_ < std::chrono::milliseconds(100) && done != total) return;
    last_ = now;
    shown_ = true;
    const double seconds = std::chrono::duration<double>(now - start_).count();
    const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
    const double eta = rate > 0 ? static_cast<double>(total - done) / rate : 0;
    const int percent = total == 0 ? 100 : static_cast<int>(100.0 * static_cast<double>(done) / static_cast<double>(total));
    fmt::print(stderr, "\r\033[K{} {:>3}%  {} / {}  {}/s  ETA {:.0f} s", verb_, percent, human_bytes(static_cast<double>(done)),
               human_bytes(static_cast<double>(total)), human_bytes(rate), eta);
    std::fflush(stderr);
  }

 private:
  using Clock = std::chrono::steady_clock;
  std::string verb_;
  bool enabled_;
  bool shown_ = false;
  Clock::time_point start_;
  Clock::time_point last_;
};

struct Options {
  std::string input;
  std::string output;
  std::vector<std::string> groups;
  std::optional<std::string> consumer;
  bool force = false;
  bool no_sync = false;
  RegistryOptions registry;
};

// The output must validate and store every rewritten group in the requested form.
void verify_output(const std::filesystem::path& temporary, const std::string& output, const spec::Spec& spec, const plugin::Plugin& plugin,
                   const fusion::RewritePlan& plan) {
  const gguf::Reader reader = gguf::Reader::open(temporary);
  const validate::PluginHooks hooks = plugin.hooks(spec.arch);
  validate::Report report = validate::validate(reader, spec, &hooks);
  std::vector<report::Finding> problems;
  for (const report::Finding& f : report.findings) {
    // Groups left fused as they were may still be unrunnable by the plugin; that is not new.
    if (plan.direction == fusion::Direction::kUnfuse && f.code == "unsupported_fusion") continue;
    problems.push_back(f);
  }
  for (const validate::GroupReport& group : report.groups) {
    if (std::find(plan.groups.begin(), plan.groups.end(), group.name) == plan.groups.end()) continue;
    const bool done = plan.direction == fusion::Direction::kFuse ? group.unfused.empty() && group.both.empty()
                                                                 : group.fused.empty() && group.both.empty();
    if (!done)
      problems.push_back({"internal", group.name, fmt::format("the output stores it {}", group.state()), std::nullopt, std::nullopt});
  }
  if (!problems.empty()) {
    throw fusion::RewriteError(fmt::format("{}: the written file failed verification, so it was not kept:", output), std::move(problems));
  }
}

// A message for stderr, each of its lines escaped: it quotes names from the file and the spec.
std::string shown(std::string_view message) {
  std::string out;
  for (size_t at = 0; at <= message.size();) {
    const size_t end = std::min(message.find('\n', at), message.size());
    out += gguf::printable(message.substr(at, end - at));
    if (end < message.size()) out += '\n';
    at = end + 1;
  }
  return out;
}

int run(const Options& options, fusion::Direction direction) {
  const char* verb = direction == fusion::Direction::kFuse ? "fuse" : "unfuse";
  if (options.output.empty()) {  // before any work: the whole rewrite would fail only at the end
    fmt::print(stderr, "archreg {}: OUT is empty: name the output file\n", verb);
    return kExitUnreadable;
  }
  try {
    registry::Registry registry = make_registry(options.registry);
    const gguf::Reader input = gguf::Reader::open(options.input);
    const auto arch = input.find("general.architecture");
    if (!arch || arch->type() != gguf::ValueType::kString) {
      fmt::print(stderr, "archreg {}: {}: no string 'general.architecture'; cannot tell which spec applies\n", verb, shown(options.input));
      return kExitInvalid;
    }
    const registry::Runnable runnable = registry::require_runnable(registry, std::string(arch->as_string()), /*need_forward=*/false);
    fusion::RewriteRequest request{direction, options.groups, options.consumer};
    const fusion::RewritePlan plan = fusion::plan_rewrite(input, *runnable.spec, *runnable.plugin, request);

    const auto start = std::chrono::steady_clock::now();
    {
      InterruptGuard guard;
      Progress progress(direction == fusion::Direction::kFuse ? "fusing" : "unfusing");
      fusion::ExecuteOptions execute;
      execute.overwrite = options.force;
      execute.sync = !options.no_sync;
      execute.progress = [&](uint64_t done, uint64_t total) { progress.update(done, total); };
      execute.cancelled = [] { return g_interrupted.load(); };
      execute.verify = [&](const std::filesystem::path& temporary) {
        input.check_unchanged();  // tensor data read from a shrunken input would be zeros
        verify_output(temporary, options.output, *runnable.spec, *runnable.plugin, plan);
      };
      fusion::execute_rewrite(plan, input, options.output, execute);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    fmt::print("{}d {}: {} -> {} ({}, {:.2f} s)\n", verb, fmt::join(plan.groups, ", "), options.input, options.output,
               human_bytes(static_cast<double>(plan.data_bytes)), seconds);
    for (const std::string& note : plan.notes) fmt::print("note: {}\n", note);
    return kExitOk;
  } catch (const fusion::RewriteError& error) {
    fmt::print(stderr, "archreg {}: {}\n", verb, shown(error.what()));
    return g_interrupted.load() ? kExitInterrupted : kExitInvalid;
  } catch (const registry::RegistryError& error) {
    fmt::print(stderr, "archreg {}: {}\n", verb, shown(error.what()));
    return kExitInvalid;
  } catch (const spec::SpecError& error) {
    fmt::print(stderr, "archreg {}: the spec is invalid:\n{}\n", verb, shown(error.what()));
    return kExitUnreadable;
  } catch (const gguf::Error& error) {
    fmt::print(stderr, "archreg {}: {}\n", verb, shown(error.what()));
    // The input was unreadable (2), or writing the output failed (1).
    return error.file() == options.input ? kExitUnreadable : kExitInvalid;
  }
}

void add_rewrite_command(CLI::App& app, int& exit_code, fusion::Direction direction) {
  const bool fuse = direction == fusion::Direction::kFuse;
  auto* command = app.add_subcommand(fuse ? "fuse" : "unfuse", fuse ? "Losslessly fuse a GGUF's fusable groups (Q/K/V, gate+up experts)"
                                                                    : "Losslessly split a GGUF's fused tensors back into their parts");
  auto options = std::make_shared<Options>();
  command->add_option("IN", options->input, "Input GGUF (never modified)")->required();
  command->add_option("OUT", options->output, "Output GGUF (not overwritten without --force)")->required();
  command->add_option("--group", options->groups,
                      fuse ? "Group to fuse (repeatable); default: every group the plugin runs fused"
                           : "Group to unfuse (repeatable); default: every fused group");
  if (fuse) {
    command->add_option("--for", options->consumer, "Only produce fused forms this loader accepts (the spec's consumers, e.g. llama.cpp)");
  }
  command->add_flag("--force", options->force, "Replace OUT if it exists");
  command->add_flag("--no-sync", options->no_sync,
                    "Do not wait for OUT to reach the disk before naming it (faster; like cp, a power loss may lose it)");
  add_registry_options(*command, options->registry);
  command->callback([options, &exit_code, direction] { exit_code = run(*options, direction); });
}

}  // namespace

void add_fuse_commands(CLI::App& app, int& exit_code) {
  add_rewrite_command(app, exit_code, fusion::Direction::kFuse);
  add_rewrite_command(app, exit_code, fusion::Direction::kUnfuse);
}

}  // namespace archreg::cli
