// `archreg chat [MODEL]`: an interactive conversation with the model's chat template. Each turn
// renders the whole conversation, tokenizes it and evaluates only what the KV cache does not
// already hold; the reply streams as it is generated. Ctrl-C stops a reply, not the chat; an
// empty line or end of input ends the chat.
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>

#include "cli/commands.hpp"
#include "cli/run_support.hpp"
#include "runtime/session.hpp"
#include "text/chat_template.hpp"
#include "text/tokenizer.hpp"

namespace archreg::cli {
namespace {

std::atomic<bool> g_stop_reply{false};

extern "C" void on_interrupt(int) {
  g_stop_reply.store(true);
}

struct ChatOptions {
  std::string model;
  std::string chat_template;
  std::string system;
  int max_reply = 512;
  std::string backend = "auto";
  int threads = 0;
  int64_t ctx = 0;
  uint64_t seed = 0;
  Sampling sampling;
  RegistryOptions registry;
};

int chat(const ChatOptions& o) {
  const std::string path = o.model.empty() ? default_model() : o.model;
  registry::Registry registry = make_registry(o.registry);
  const runtime::Model model = runtime::Model::open(path, registry);
  const text::Tokenizer tokenizer = text::Tokenizer::from_gguf(model.reader());
  const text::ChatTemplate chat_template = text::ChatTemplate::from_gguf(model.reader(), o.chat_template);
  runtime::SessionOptions options;
  options.backend = o.backend;
  options.threads = o.threads;
  options.n_ctx = o.ctx;
  runtime::Session session(model, options);
  Sampler sampler(o.sampling, o.seed);
  std::vector<text::ChatMessage> messages;
  if (!o.system.empty()) messages.push_back({"system", o.system});
  std::vector<int32_t> in_cache;  // the tokens the KV cache holds, in order
  const bool interactive = isatty(STDIN_FILENO) != 0;
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  fmt::print(stderr, "archreg chat: {} ({}), template {}; an empty line ends the chat, Ctrl-C stops a reply\n", model.arch(),
             std::filesystem::path(path).filename().string(), chat_template.family());
  std::string line;
  for (;;) {
    if (interactive) fmt::print(stderr, "> ");
    if (!std::getline(std::cin, line) || line.empty()) break;
    messages.push_back({"user", line});
    const std::vector<int32_t> prompt = tokenizer.encode(chat_template.apply(messages, true), true, true);
    size_t common = 0;
    while (common < prompt.size() && common < in_cache.size() && prompt[common] == in_cache[common]) ++common;
    if (common == prompt.size()) --common;  // evaluate at least the last token to get logits
    if (static_cast<int64_t>(prompt.size()) + o.max_reply > session.n_ctx()) {
      throw runtime::RunError(
          fmt::format("the conversation ({} tokens) and a reply of up to {} no longer fit the context of {} (use --ctx)", prompt.size(),
                      o.max_reply, session.n_ctx()));
    }
    session.rewind(static_cast<int64_t>(common));
    in_cache.assign(prompt.begin(), prompt.begin() + static_cast<std::ptrdiff_t>(common));
    std::span<const float> logits = session.eval(std::span<const int32_t>(prompt).subspan(common));
    in_cache.insert(in_cache.end(), prompt.begin() + static_cast<std::ptrdiff_t>(common), prompt.end());
    g_stop_reply.store(false);
    text::StreamDecoder stream(tokenizer);
    std::string reply;
    for (int i = 0; i < o.max_reply && !g_stop_reply.load(); ++i) {
      const int32_t next = sampler.sample(logits.first(static_cast<size_t>(session.n_vocab())));
      if (tokenizer.is_eog(next)) break;
      const std::string piece = stream.feed(next);
      reply += piece;
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      const int32_t one[1] = {next};
      logits = session.eval(one);
      in_cache.push_back(next);
    }
    const std::string tail = stream.flush();
    reply += tail;
    fmt::print("{}\n", tail);
    std::fflush(stdout);
    messages.push_back({"assistant", reply});
  }
  return kExitOk;
}

}  // namespace

void add_chat_command(CLI::App& app, int& exit_code) {
  auto* command = app.add_subcommand("chat", "Talk with a model, using its chat template (multi-turn, streaming)");
  auto o = std::make_shared<ChatOptions>();
  command->add_option("model", o->model, "GGUF model (default: the embedded SmolLM2-135M-Instruct)");
  command->add_option("--chat-template", o->chat_template,
                      "Template family instead of the file's (archreg tokenize --help lists them), or raw");
  command->add_option("--system", o->system, "A system message opening the conversation");
  command->add_option("-n,--n-predict", o->max_reply, "Most tokens in one reply")->check(CLI::PositiveNumber);
  command->add_option("-t,--threads", o->threads, "CPU threads (default: every core)")->check(CLI::NonNegativeNumber);
  add_backend_option(*command, o->backend);
  command->add_option("-c,--ctx", o->ctx, "Context size in tokens")->check(CLI::NonNegativeNumber);
  command->add_option("-s,--seed", o->seed, "Sampling seed");
  add_sampling_options(*command, o->sampling);
  add_registry_options(*command, o->registry);
  command->callback([o, &exit_code] { exit_code = guard_run("chat", [&] { return chat(*o); }); });
}

}  // namespace archreg::cli
