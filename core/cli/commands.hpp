// Each archreg subcommand registers itself on the CLI11 app; its callback stores the process
// exit status in `exit_code`.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "registry/registry.hpp"

namespace archreg::cli {

// Exit statuses shared by every command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitInvalid = 1;     // the input is readable but does not pass a check
inline constexpr int kExitUnreadable = 2;  // unreadable or malformed input, or a usage error

void add_inspect_command(CLI::App& app, int& exit_code);
void add_validate_command(CLI::App& app, int& exit_code);
void add_spec_command(CLI::App& app, int& exit_code);
void add_list_command(CLI::App& app, int& exit_code);
void add_fuse_commands(CLI::App& app, int& exit_code);  // fuse and unfuse
void add_tokenize_command(CLI::App& app, int& exit_code);
void add_run_command(CLI::App& app, int& exit_code);
void add_bench_command(CLI::App& app, int& exit_code);
void add_chat_command(CLI::App& app, int& exit_code);

// `--spec-dir DIR` and `--plugin-dir DIR` (repeatable): searched before the default directories.
struct RegistryOptions {
  std::vector<std::string> spec_dirs;
  std::vector<std::string> plugin_dirs;
};
void add_registry_options(CLI::App& command, RegistryOptions& options);
registry::Registry make_registry(const RegistryOptions& options);

// "1.25 GiB", "512 B": sizes and rates for people.
std::string human_bytes(double bytes);

}  // namespace archreg::cli
