// Each archreg subcommand registers itself on the CLI11 app; its callback stores the process
// exit status in `exit_code`.
#pragma once

#include <CLI/CLI.hpp>

namespace archreg::cli {

// Exit statuses shared by every command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitInvalid = 1;     // the input is readable but does not pass a check
inline constexpr int kExitUnreadable = 2;  // unreadable or malformed input, or a usage error

void add_inspect_command(CLI::App& app, int& exit_code);

}  // namespace archreg::cli
