// Hostile specs, manifests and special files (issue 12): everything that reaches archreg
// besides a GGUF header must end in a clear error, never a crash (a stack overflow on a deep
// expression), a hang (a FIFO opened for reading), unbounded memory or time (a huge or
// quadratic spec, a manifest that is /dev/zero), or SIGBUS (a file truncated while read).
#include <fcntl.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "gguf/error.hpp"
#include "gguf/reader.hpp"
#include "gguf/regular_file.hpp"
#include "gguf_bytes.hpp"
#include "registry/registry.hpp"
#include "spec/expr.hpp"
#include "spec/spec.hpp"
#include "test_support.hpp"
#include "validate/validate.hpp"

namespace archreg {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

const std::filesystem::path kToySpecs = testing::source_dir() / "tests" / "fixtures" / "toy-specs";
const std::filesystem::path kPlugins = ARCHREG_TEST_PLUGIN_DIR;

// A small valid GGUF file of the repository (any will do).
std::filesystem::path source_gguf() {
  static testing::TempDir dir;
  const std::filesystem::path file = dir / "small.gguf";
  if (!std::filesystem::exists(file)) {
    test::GgufBytes bytes;
    bytes.header(3, 0, 1).kv_string("general.architecture", "x");
    std::ofstream out(file, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.bytes().data()), static_cast<std::streamsize>(bytes.bytes().size()));
  }
  return file;
}

std::string repeat(std::string_view text, size_t times) {
  std::string out;
  out.reserve(text.size() * times);
  for (size_t i = 0; i < times; ++i) out += text;
  return out;
}

void write(const std::filesystem::path& file, std::string_view text) {
  std::ofstream out(file, std::ios::binary);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
}

// The problems of the SpecError that parsing `yaml` raises (empty if it parses).
std::vector<std::string> spec_problems(const std::string& yaml) {
  try {
    spec::parse_spec(yaml, "hostile.yaml");
  } catch (const spec::SpecError& error) {
    return error.problems();
  }
  return {};
}

// A minimal valid spec whose hparams, extra tensors and fusable section are given.
std::string spec_with(std::string_view hparams, std::string_view layer = "", std::string_view tail = "") {
  return fmt::format(
      "schema_version: 1\narch: hostile\nhparams:\n  n_embd: {{ key: \"{{arch}}.embedding_length\" }}\n  n_layer: {{ key: "
      "\"{{arch}}.block_count\" }}\n{}layers: n_layer\ntensors:\n  token_embd: [n_embd]\nlayer:\n  attn_q: [n_embd, n_embd]\n{}{}",
      hparams, layer, tail);
}

std::string expr_error(const std::string& text) {
  const spec::Expr::Resolver resolve = [](std::string_view name) -> std::optional<uint32_t> {
    if (name == "a") return 0;
    return std::nullopt;
  };
  try {
    spec::Expr::parse(text, spec::SourcePos{"x.yaml", 1, 1}, resolve);
  } catch (const spec::ExprSyntaxError& error) {
    return error.what();
  }
  return "parsed";
}

// ---- expressions: depth and length are bounded, so nothing recurses without limit ----

TEST(HostileExpr, DeepParenthesesAreRefusedNotAStackOverflow) {
  EXPECT_THAT(expr_error(repeat("(", 10000) + "a" + repeat(")", 10000)), HasSubstr("at most 4096 are allowed"));
  EXPECT_THAT(expr_error(repeat("(", 1000) + "a" + repeat(")", 1000)), HasSubstr("nested deeper than 64 levels"));
  EXPECT_EQ(expr_error(repeat("(", 40) + "a" + repeat(")", 40)), "parsed");
}

TEST(HostileExpr, LongUnaryChainsAreRefused) {
  EXPECT_THAT(expr_error(repeat("-", 100000) + "a"), HasSubstr("at most 4096"));
  EXPECT_THAT(expr_error(repeat("-", 4000) + "a"), HasSubstr("nested deeper"));
  EXPECT_THAT(expr_error(repeat("!", 4000) + "a"), HasSubstr("nested deeper"));
  EXPECT_THAT(expr_error(repeat("- ", 1000) + "a"), HasSubstr("nested deeper"));
}

TEST(HostileExpr, NestedFunctionsAndConditionalsAreRefused) {
  EXPECT_THAT(expr_error(repeat("min(", 800) + "a" + repeat(")", 800)), HasSubstr("nested deeper"));
  EXPECT_THAT(expr_error(repeat("a ? a : ", 500) + "a"), HasSubstr("nested deeper"));
  EXPECT_THAT(expr_error(repeat("a ? ", 500) + "a" + repeat(" : a", 500)), HasSubstr("nested deeper"));
}

TEST(HostileExpr, LeftAssociativeChainsCountAsDepthSoEvaluationStaysShallow) {
  // a + a + ... builds a left-deep tree without any recursion in the parser: its depth is
  // what evaluating and printing it would recurse on.
  EXPECT_THAT(expr_error("a" + repeat(" + a", 1000)), HasSubstr("nested deeper"));
  EXPECT_EQ(expr_error("a" + repeat(" + a", 60)), "parsed");
}

TEST(HostileExpr, OverlongTextIsRefusedAndNotEchoedWhole) {
  const std::string message = expr_error("a" + repeat(" ", 5000));
  EXPECT_THAT(message, HasSubstr("at most 4096 are allowed"));
  EXPECT_LT(message.size(), 400u);
}

// ---- specs ----

TEST(HostileSpec, DeepExpressionsInEverySlotAreProblemsNotCrashes) {
  const std::string deep = repeat("(", 2000) + "n_embd" + repeat(")", 2000);
  for (const std::string& yaml :
       {spec_with(fmt::format("  x: {{ value: \"{}\" }}\n", deep)), spec_with("", fmt::format("  attn_k: [\"{}\"]\n", deep)),
        spec_with("", "", fmt::format("checks:\n  - {{ expr: \"{}\", message: m }}\n", deep))}) {
    EXPECT_THAT(spec_problems(yaml), Contains(HasSubstr("nested deeper than 64 levels")));
  }
}

TEST(HostileSpec, LongValueChainsAreRefusedWithoutRecursion) {
  std::string chain = "  h0: { key: a }\n";
  for (int i = 1; i < 200; ++i) chain += fmt::format("  h{}: {{ value: h{} + 1 }}\n", i, i - 1);
  EXPECT_THAT(spec_problems(spec_with(chain)),
              ElementsAre(AllOf(HasSubstr("starts a chain of 33 hyperparameters"), HasSubstr("at most 32"))));
  std::string cycle;
  for (int i = 0; i < 200; ++i) cycle += fmt::format("  c{}: {{ value: c{} + 1 }}\n", i, (i + 1) % 200);
  EXPECT_THAT(spec_problems(spec_with(cycle)), Contains(HasSubstr("depends on itself")));
  std::string short_chain = "  h0: { key: a }\n";
  for (int i = 1; i < 30; ++i) short_chain += fmt::format("  h{}: {{ value: h{} + 1 }}\n", i, i - 1);
  EXPECT_THAT(spec_problems(spec_with(short_chain)), SizeIs(0));
}

TEST(HostileSpec, ManyHyperparametersTensorsGroupsAndChecksAreLimited) {
  std::string hparams;
  for (int i = 0; i < 300; ++i) hparams += fmt::format("  h{}: {{ key: k{} }}\n", i, i);
  EXPECT_THAT(spec_problems(spec_with(hparams)), ElementsAre(HasSubstr("more than 256 hyperparameters")));
  std::string tensors;
  for (int i = 0; i < 5000; ++i) tensors += fmt::format("  t{}: [n_embd]\n", i);
  EXPECT_THAT(spec_problems(spec_with("", tensors)), ElementsAre(HasSubstr("more than 4096 tensors")));
  std::string parts = "fusable:\n  big: { axis: 0, parts: [";
  for (int i = 0; i < 20; ++i) parts += fmt::format("{}p{}", i ? ", " : "", i);
  EXPECT_THAT(spec_problems(spec_with("", "", parts + "] }\n")), ElementsAre(HasSubstr("has 20 parts; at most 16")));
}

TEST(HostileSpec, ArchSubstitutionEndsAndIsBounded) {
  // Found by spec_fuzz: an arch named "x{arch}" made the {arch} substitution loop forever.
  const auto with_arch = [](const std::string& arch, const std::string& key) {
    std::string yaml = spec_with(fmt::format("  k: {{ key: \"{}\" }}\n", key));
    return yaml.replace(yaml.find("arch: hostile"), 13, "arch: \"" + arch + "\"");
  };
  EXPECT_THAT(spec_problems(with_arch("x{arch}", "{arch}.{arch}")), SizeIs(0));
  EXPECT_EQ(spec::parse_spec(with_arch("x{arch}", "{arch}.n"), "x.yaml").hparams.back().key, "x{arch}.n");
  EXPECT_THAT(spec_problems(with_arch(repeat("a", 200), repeat("{arch}", 1000))), ElementsAre(HasSubstr("longer than 4096 bytes")));
  EXPECT_THAT(spec_problems(with_arch(repeat("a", 300), "k")), ElementsAre(HasSubstr("arch is 300 bytes")));
}

TEST(HostileSpec, ProblemsStopAtALimit) {
  std::string unknown;
  for (int i = 0; i < 1000; ++i) unknown += fmt::format("unknown{}: 1\n", i);
  const auto problems = spec_problems(spec_with("", "", unknown));
  EXPECT_THAT(problems, SizeIs(spec::kMaxProblems + 1));
  EXPECT_THAT(problems.back(), HasSubstr("stopping here"));
}

TEST(HostileSpec, OversizedTextIsRefusedBeforeParsing) {
  const std::string huge = spec_with("") + "description: \"" + repeat("x", spec::kMaxSpecBytes) + "\"\n";
  EXPECT_THAT(spec_problems(huge), ElementsAre(HasSubstr("at most 262144 are read")));
}

TEST(HostileSpec, YamlNodesAreCountedBeforeTheTreeIsBuilt) {
  // yaml-cpp spends about 500 bytes on each node: a flow list of tiny scalars is the cheapest
  // way to make it allocate, so the count is checked from the parser's events first.
  EXPECT_THAT(spec_problems("[" + repeat("1,", 100000) + "1]"), ElementsAre(HasSubstr("more than 65536 YAML nodes")));
  EXPECT_THAT(spec_problems("a: &a [" + repeat("x, ", 100) + "x]\n" + repeat("b: *a\n", 1000)), Not(SizeIs(0)));
}

TEST(HostileSpec, YamlOfTheWrongShapeIsAProblem) {
  EXPECT_THAT(spec_problems(spec_with("  ? [a, b]\n  : { key: x }\n")), SizeIs(1));  // a sequence as a key
  EXPECT_THAT(spec_problems(repeat("[", 100000) + repeat("]", 100000)), SizeIs(1));  // yaml-cpp's depth guard
  EXPECT_THAT(spec_problems(repeat("- ", 5000) + "x\n"), SizeIs(1));
  EXPECT_THAT(spec_problems("a: &a [x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b, *b]\n"), Not(SizeIs(0)));
}

// Linear-time loading is a speed property: measured by tests/bench/bench_hostile.py (figures in
// docs/performance.md), not by a timed unit test, which a loaded machine makes flaky.

TEST(HostileSpec, OnlyRegularFilesOfBoundedSizeAreRead) {
  testing::TempDir dir;
  ASSERT_EQ(mkfifo((dir / "fifo.yaml").c_str(), 0600), 0);
  std::filesystem::create_symlink("/dev/zero", dir / "zero.yaml");
  std::filesystem::create_symlink(dir / "loop.yaml", dir / "loop.yaml");
  std::filesystem::create_directory(dir / "dir.yaml");
  write(dir / "big.yaml", std::string(spec::kMaxSpecBytes + 1, '#'));
  const auto load_error = [](const std::filesystem::path& file) {
    try {
      spec::load_spec(file);
    } catch (const spec::SpecError& error) {
      return std::string(error.what());
    }
    return std::string("loaded");
  };
  EXPECT_THAT(load_error(dir / "fifo.yaml"), HasSubstr("is a named pipe (FIFO), not a regular file"));
  EXPECT_THAT(load_error(dir / "zero.yaml"), HasSubstr("is a character device, not a regular file"));
  EXPECT_THAT(load_error(dir / "loop.yaml"), HasSubstr("Too many levels of symbolic links"));
  EXPECT_THAT(load_error(dir / "dir.yaml"), HasSubstr("is a directory"));
  EXPECT_THAT(load_error(dir / "big.yaml"), HasSubstr("at most 262144 are read"));
}

// ---- validation: a hostile spec cannot make evaluation exponential ----

TEST(HostileSpec, FailedValuesAreRememberedSoDoublingChainsStayFast) {
  std::string chain = "  h0: { key: absent.key }\n";
  for (int i = 1; i < 31; ++i) chain += fmt::format("  h{}: {{ value: h{} + h{} }}\n", i, i - 1, i - 1);
  const spec::Spec spec = spec::parse_spec(spec_with(chain, "", "checks:\n  - { expr: h30 > 0, message: m }\n"), "hostile.yaml");
  test::GgufBytes file;
  file.header(3, 0, 3).kv_string("general.architecture", "hostile").kv_u32("hostile.embedding_length", 8).kv_u32("hostile.block_count", 1);
  const test::ExactCopy bytes(file.span());
  const gguf::Reader reader = gguf::Reader::from_memory(bytes.span(), "chain.gguf");
  // Not a speed test: without memoisation this is 2^30 evaluations (minutes); with it, microseconds.
  // The bound only tells a hang from a finish, with room for sanitizers on a loaded machine.
  const auto start = std::chrono::steady_clock::now();
  const validate::Report report = validate::validate(reader, spec, nullptr);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 10.0);
  EXPECT_FALSE(report.valid());  // absent.key is missing
}

// ---- the one escaping function ----

TEST(Printable, EscapesWhatCouldHijackATerminalAndKeepsText) {
  using gguf::printable;
  EXPECT_EQ(printable("blk.0.attn_q.weight"), "blk.0.attn_q.weight");
  EXPECT_EQ(printable("caf\xc3\xa9 \xe4\xb8\xad"), "caf\xc3\xa9 \xe4\xb8\xad");  // valid UTF-8 stays
  EXPECT_EQ(printable(std::string("a\x1b[31mb\nc\0d\x7f", 12)), "a\\x1b[31mb\\x0ac\\x00d\\x7f");
  EXPECT_EQ(printable("\xc2\x85"), "\\xc2\\x85");                             // C1 control NEL
  EXPECT_EQ(printable("x\xe2\x80\xaey"), "x\\xe2\\x80\\xaey");                // U+202E right-to-left override
  EXPECT_EQ(printable("\xff\xc3"), "\\xff\\xc3");                             // invalid and truncated UTF-8
  EXPECT_EQ(printable("\xc0\xaf\xed\xa0\x80"), "\\xc0\\xaf\\xed\\xa0\\x80");  // overlong, surrogate
  const std::string hostile = "\x1b]0;title\x07\xff\n";
  EXPECT_EQ(printable(printable(hostile)), printable(hostile));
}

TEST(Printable, JsonKeepsControlCharactersForTheEncoderAndEscapesOnlyInvalidUtf8) {
  using gguf::Escape;
  using gguf::printable;
  EXPECT_EQ(printable("line\none\x1b", Escape::kJson), "line\none\x1b");
  EXPECT_EQ(printable("a\xff"
                      "b\xe4\xb8",
                      Escape::kJson),
            "a\\xffb\\xe4\\xb8");
}

// ---- GGUF files: special files, truncation while read, header size ----

TEST(HostileGgufFile, SpecialFilesAreRefusedWithoutBlockingOrStrayErrnoText) {
  testing::TempDir dir;
  ASSERT_EQ(mkfifo((dir / "fifo.gguf").c_str(), 0600), 0);
  const auto open_error = [](const std::filesystem::path& file) {
    try {
      gguf::Reader::open(file);
    } catch (const gguf::Error& error) {
      return std::string(error.what());
    }
    return std::string("opened");
  };
  EXPECT_THAT(open_error(dir / "fifo.gguf"), AllOf(HasSubstr("named pipe (FIFO), not a regular file"), Not(HasSubstr("Success"))));
  EXPECT_THAT(open_error("/dev/null"), AllOf(HasSubstr("character device, not a regular file"), Not(HasSubstr("Success"))));
  EXPECT_THAT(open_error(dir.path()), HasSubstr("is a directory"));
}

TEST(HostileGgufFile, AFileTruncatedWhileMappedIsAnErrorNotSigbus) {
  testing::TempDir dir;
  test::GgufBytes file;
  file.header(3, 0, 3).kv_string("general.architecture", "truncated").kv_u32("truncated.block_count", 2);
  file.kv_array_header("tokenizer.ggml.tokens", test::tag::kString, 20000);
  for (int i = 0; i < 20000; ++i) file.str(fmt::format("token-{}", i));  // a header of many pages
  file.fill(1 << 20);
  write(dir / "model.gguf", std::string_view(reinterpret_cast<const char*>(file.bytes().data()), file.bytes().size()));
  const gguf::Reader reader = gguf::Reader::open(dir / "model.gguf");
  EXPECT_NO_THROW(reader.check_unchanged());
  std::filesystem::resize_file(dir / "model.gguf", 0);  // the mapping loses its pages: reading them was SIGBUS
  size_t characters = 0;
  for (const gguf::KeyValue& kv : reader.metadata()) {
    const gguf::Value value = reader.value(kv);
    if (value.is_array()) {
      for (const gguf::Value item : value) characters += item.as_string().size();  // zeros now
    }
  }
  EXPECT_EQ(characters, 0u);
  try {
    reader.check_unchanged();
    FAIL() << "the change went unnoticed";
  } catch (const gguf::Error& error) {
    EXPECT_THAT(error.what(), AllOf(HasSubstr("model.gguf"), HasSubstr("shrank while it was being read")));
  }
  // Reopening sees the truncated file as it now is.
  EXPECT_THROW(gguf::Reader::open(dir / "model.gguf"), gguf::Error);
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

TEST(HostileGgufFile, ASigbusOutsideReadersStillKills) {
  // The handler absorbs only faults inside a Reader's mapping; any other SIGBUS gets what the
  // handler before it would have done (the default action: the process dies).
  testing::TempDir dir;
  write(dir / "other", std::string(8192, 'x'));
  gguf::Reader::open(source_gguf());  // installs the handler
  EXPECT_EXIT(
      {
        const int fd = ::open((dir / "other").c_str(), O_RDONLY);
        auto* bytes = static_cast<volatile const char*>(mmap(nullptr, 8192, PROT_READ, MAP_PRIVATE, fd, 0));
        if (ftruncate(::open((dir / "other").c_str(), O_WRONLY), 0) != 0) std::_Exit(3);
        std::_Exit(bytes[4096] == 'x' ? 4 : 5);
      },
      [](int status) {
        // Killed by SIGBUS, or under AddressSanitizer (whose handler was there first) by its
        // report: exit 1, or SIGABRT with the abort_on_error=1 of the asan test preset.
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS) return true;
        if (!kAddressSanitizer) return false;
        return (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT) || (WIFEXITED(status) && WEXITSTATUS(status) == 1);
      },
      "");
}

TEST(HostileGgufFile, AHugeKeyNamedInAnErrorIsShownShortened) {
  // A key may be as long as the file; escaping all of it byte by byte made one fuzz input take
  // 7 s. An error shows the key's first 256 bytes and its length.
  test::GgufBytes file;
  file.header(3, 0, 1).key(std::string(8 << 20, '\0'), 99);
  const test::ExactCopy bytes(file.span());
  try {
    gguf::Reader::from_memory(bytes.span(), "huge-key.gguf");
    FAIL() << "accepted";
  } catch (const gguf::Error& error) {
    EXPECT_THAT(error.what(), AllOf(HasSubstr("...' (8388608 bytes)"), HasSubstr("unknown value type 99")));
    EXPECT_LT(std::string(error.what()).size(), 1500u);  // the key is shortened, not escaped whole
  }
}

// ---- the registry: directories by identity, overriding, hostile manifests and libraries ----

registry::Registry make(std::vector<std::filesystem::path> plugin_dirs, std::vector<std::filesystem::path> spec_dirs) {
  return registry::Registry(registry::Registry::Dirs{std::move(spec_dirs), std::move(plugin_dirs)});
}

TEST(HostileRegistry, OneDirectoryReachedTwiceIsSearchedOnce) {
  testing::TempDir dir;
  std::filesystem::create_directory_symlink(kToySpecs, dir / "link");
  registry::Registry registry = make({}, {kToySpecs, dir / "link", kToySpecs / ".", dir / "link" / ".." / "link"});
  const registry::ArchInfo info = registry.info("toymoe");
  EXPECT_EQ(info.state, registry::ArchState::kValidateOnly);
  EXPECT_THAT(info.problems, SizeIs(0));
  EXPECT_THAT(info.shadowed_specs, SizeIs(0));
}

TEST(HostileRegistry, AnEarlierSpecDirectoryOverridesALaterOne) {
  testing::TempDir dir;
  std::filesystem::copy_file(kToySpecs / "toymoe.yaml", dir / "toymoe.yaml");
  registry::Registry registry = make({}, {dir.path(), kToySpecs});
  const registry::ArchInfo info = registry.info("toymoe");
  EXPECT_EQ(info.state, registry::ArchState::kValidateOnly);
  EXPECT_EQ(info.spec_file, dir / "toymoe.yaml");
  EXPECT_THAT(info.shadowed_specs, ElementsAre(kToySpecs / "toymoe.yaml"));
  EXPECT_EQ(registry.spec("toymoe")->file, (dir / "toymoe.yaml").string());
}

TEST(HostileRegistry, AnEarlierPluginDirectoryOverridesALaterOne) {
  registry::Registry registry = make({kPlugins / "toy", kPlugins / "duplicate"}, {kToySpecs});
  const registry::ArchInfo info = registry.info("toymoe");
  EXPECT_EQ(info.state, registry::ArchState::kRunnable);
  EXPECT_EQ(info.plugin_file->filename(), "archreg-toymoe.so");
  ASSERT_THAT(info.shadowed_plugins, SizeIs(1));
  EXPECT_EQ(info.shadowed_plugins[0].filename(), "archreg-toymoe-again.so");
}

TEST(HostileRegistry, UnreadableManifestsBecomeBrokenRowsNamingTheFile) {
  testing::TempDir dir;
  ASSERT_EQ(mkfifo((dir / "fifo.archs").c_str(), 0600), 0);
  std::filesystem::create_symlink("/dev/zero", dir / "zero.archs");
  write(dir / "big.archs", std::string(100000, 'x'));
  registry::Registry registry = make({dir.path(), kPlugins / "toy"}, {kToySpecs});
  std::map<std::string, registry::ArchInfo> rows;
  for (registry::ArchInfo& row : registry.archs()) rows.emplace(row.arch, std::move(row));
  EXPECT_EQ(rows.at("toymoe").state, registry::ArchState::kRunnable);
  EXPECT_THAT(rows.at("fifo.archs").problems, ElementsAre(HasSubstr("named pipe (FIFO)")));
  EXPECT_THAT(rows.at("zero.archs").problems, ElementsAre(HasSubstr("character device")));
  EXPECT_THAT(rows.at("big.archs").problems, ElementsAre(HasSubstr("at most 65536 are read")));
  EXPECT_EQ(rows.at("fifo.archs").state, registry::ArchState::kBroken);
}

TEST(HostileRegistry, ASpecialPluginLibraryIsAnErrorNamingTheFile) {
  for (const std::string kind : {"loop", "fifo", "dir"}) {
    testing::TempDir dir;
    write(dir / "archreg-evil.archs", "toymoe\n");
    const std::filesystem::path library = dir / "archreg-evil.so";
    if (kind == "loop") std::filesystem::create_symlink(library, library);
    if (kind == "fifo") {
      ASSERT_EQ(mkfifo(library.c_str(), 0600), 0);
    }
    if (kind == "dir") std::filesystem::create_directory(library);
    registry::Registry registry = make({dir.path()}, {kToySpecs});
    try {
      registry.plugin("toymoe");
      ADD_FAILURE() << kind << ": opened";
    } catch (const registry::RegistryError& error) {
      EXPECT_THAT(error.what(), AllOf(HasSubstr("archreg-evil.so"), HasSubstr("archreg-evil.archs"))) << kind;
    }
  }
}

TEST(HostileRegistry, APluginMayRunFusedOnlyGroupsItsSpecDeclares) {
  testing::TempDir dir;
  std::ifstream in(kToySpecs / "toymoe.yaml");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  text = text.substr(0, text.find("\nfusable:")) + "\n";
  write(dir / "toymoe.yaml", text);
  registry::Registry registry = make({kPlugins / "toy"}, {dir.path()});
  try {
    registry.plugin("toymoe");
    FAIL() << "opened";
  } catch (const registry::RegistryError& error) {
    EXPECT_THAT(error.what(), AllOf(HasSubstr("runs 'ffn_gate_up_exps' fused"), HasSubstr("declares no such fusable group")));
  }
}

}  // namespace
}  // namespace archreg
