// bench_open FILE [--repeat N]: times gguf::Reader::open on FILE, in process, N times after an
// untimed run that warms the page cache, and after each open the decoding of every string of
// every string array (the vocabulary), which open() only indexes by byte span. Prints one JSON
// object with the min and median milliseconds of each.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gguf/error.hpp"
#include "gguf/reader.hpp"

namespace {

namespace gguf = archreg::gguf;
using Clock = std::chrono::steady_clock;

double elapsed_ms(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

nlohmann::json summary(std::vector<double> samples_ms) {
  std::sort(samples_ms.begin(), samples_ms.end());
  return {{"min", samples_ms.front()}, {"median", samples_ms[samples_ms.size() / 2]}};
}

// Reads every string of every string array; returns their total length so that the work
// cannot be optimised away.
uint64_t touch_string_arrays(const gguf::Reader& reader) {
  uint64_t total = 0;
  for (const gguf::KeyValue& kv : reader.metadata()) {
    const gguf::Value value = reader.value(kv);
    if (value.is_array() && value.element_type() == gguf::ValueType::kString) {
      for (const gguf::Value& item : value) {
        total += item.as_string().size();
      }
    }
  }
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  int repeat = 20;
  bool usable = args.size() == 1;
  if (args.size() == 3 && args[1] == "--repeat") {
    const std::string& text = args[2];
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), repeat);
    usable = ec == std::errc() && end == text.data() + text.size() && repeat > 0;
  }
  if (!usable) {
    std::cerr << "usage: bench_open FILE [--repeat N]\n";
    return 1;
  }
  const std::string& path = args[0];
  try {
    const gguf::Reader warm_up = gguf::Reader::open(path);
    uint64_t string_bytes = touch_string_arrays(warm_up);
    std::vector<double> open_ms;
    std::vector<double> touch_ms;
    for (int i = 0; i < repeat; ++i) {
      const Clock::time_point start = Clock::now();
      const gguf::Reader reader = gguf::Reader::open(path);
      open_ms.push_back(elapsed_ms(start));

      const Clock::time_point touch_start = Clock::now();
      string_bytes = touch_string_arrays(reader);
      touch_ms.push_back(elapsed_ms(touch_start));
    }
    const nlohmann::json result = {
        {"file", path},
        {"repeat", repeat},
        {"open_ms", summary(open_ms)},
        {"touch_strings_ms", summary(touch_ms)},
        {"string_bytes", string_bytes},
        {"n_kv", warm_up.metadata().size()},
        {"n_tensors", warm_up.tensors().size()},
        {"header_bytes", warm_up.data_section_offset()},
        {"file_size", warm_up.file_size()},
    };
    std::cout << result.dump() << "\n";
  } catch (const gguf::Error& e) {
    std::cerr << "bench_open: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
