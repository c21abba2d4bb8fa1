// Each archreg subcommand registers itself on the CLI11 app; its callback stores the process
// exit status in `exit_code`.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "registry/spec_catalog.hpp"

namespace archreg::cli {

// Exit statuses shared by every command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitInvalid = 1;     // the input is readable but does not pass a check
inline constexpr int kExitUnreadable = 2;  // unreadable or malformed input, or a usage error

void add_inspect_command(CLI::App& app, int& exit_code);
void add_validate_command(CLI::App& app, int& exit_code);
void add_spec_command(CLI::App& app, int& exit_code);

// `--spec-dir DIR` (repeatable): directories searched before the defaults.
void add_spec_dir_option(CLI::App& command, std::vector<std::string>& dirs);
registry::SpecCatalog make_spec_catalog(const std::vector<std::string>& extra_dirs);

}  // namespace archreg::cli
