// gguf-testtool: the bridge the interop tests use to drive our GGUF reader and writer from
// Python, so that gguf-py (llama.cpp's own implementation) can check them byte for byte.
//
//   gguf-testtool write DESC.json OUT.gguf   writes a GGUF file with gguf::Writer
//   gguf-testtool dump FILE.gguf             prints everything gguf::Reader sees, as JSON
//
// Both sides speak one JSON vocabulary, so dump's "metadata" is valid input to write:
//   metadata entry  {"key": K, "type": "UINT32", "value": 7}
//                   {"key": K, "type": "ARRAY", "element_type": T, "value": [...]}
//   array element   a plain value, or {"element_type": T, "value": [...]} when T is ARRAY
//   integers        JSON integers (the full uint64/int64 range)
//   floats          JSON numbers when finite (a float32 or float64 is exactly representable
//                   as a JSON double, which round-trips); otherwise, or whenever wanted, the
//                   bit pattern as a hex string: "0x7fc00000"
//   strings         JSON strings; bytes that are not UTF-8 as {"hex": "c328"}
//   tensor (write)  {"name", "type": "Q4_K", "shape": [ne0, ...], "data_hex" | "data_seed"}
//                   data_seed N: the SplitMix64(N) byte stream (splitmix64.hpp)
//   tensor (dump)   {"name", "type", "type_id", "shape", "offset", "data_offset", "n_bytes",
//                   "sha256"}
//
// Exit status: 0 success, 1 usage or description error, 2 the GGUF file was rejected.
#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gguf/error.hpp"
#include "gguf/reader.hpp"
#include "gguf/types.hpp"
#include "gguf/value.hpp"
#include "gguf/writer.hpp"
#include "splitmix64.hpp"

namespace {

using archreg::gguf::MetaArray;
using archreg::gguf::MetaValue;
using archreg::gguf::ValueType;
using nlohmann::json;

// A mistake in the test's description, as opposed to a file the library rejected.
class DescriptionError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------------------------
// SHA-256 (FIPS 180-4), so that Python's hashlib can check tensor bytes without us printing them.

class Sha256 {
 public:
  void update(std::span<const std::byte> data) {
    for (std::byte b : data) {
      block_[block_used_++] = static_cast<uint8_t>(b);
      if (block_used_ == block_.size()) {
        compress();
        block_used_ = 0;
      }
    }
    total_bytes_ += data.size();
  }

  std::string hex_digest() {
    const uint64_t total_bits = total_bytes_ * 8;
    block_[block_used_++] = 0x80;
    if (block_used_ > 56) {
      std::fill(block_.begin() + static_cast<std::ptrdiff_t>(block_used_), block_.end(), 0);
      compress();
      block_used_ = 0;
    }
    std::fill(block_.begin() + static_cast<std::ptrdiff_t>(block_used_), block_.begin() + 56, 0);
    for (int i = 0; i < 8; ++i) {
      block_[static_cast<size_t>(56 + i)] = static_cast<uint8_t>(total_bits >> (56 - 8 * i));
    }
    compress();
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (uint32_t word : state_) {
      for (int shift = 28; shift >= 0; shift -= 4) {
        out.push_back(kDigits[(word >> shift) & 0xF]);
      }
    }
    return out;
  }

 private:
  void compress() {
    static constexpr std::array<uint32_t, 64> kRound = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be,
        0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa,
        0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85,
        0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
        0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
        0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    std::array<uint32_t, 64> w{};
    for (size_t i = 0; i < 16; ++i) {
      w[i] = uint32_t{block_[4 * i]} << 24 | uint32_t{block_[4 * i + 1]} << 16 | uint32_t{block_[4 * i + 2]} << 8 |
             uint32_t{block_[4 * i + 3]};
    }
    for (size_t i = 16; i < 64; ++i) {
      uint32_t s0 = std::rotr(w[i - 15], 7) ^ std::rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = std::rotr(w[i - 2], 17) ^ std::rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    auto [a, b, c, d, e, f, g, h] = state_;
    for (size_t i = 0; i < 64; ++i) {
      uint32_t t1 = h + (std::rotr(e, 6) ^ std::rotr(e, 11) ^ std::rotr(e, 25)) + ((e & f) ^ (~e & g)) + kRound[i] + w[i];
      uint32_t t2 = (std::rotr(a, 2) ^ std::rotr(a, 13) ^ std::rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    const std::array<uint32_t, 8> add = {a, b, c, d, e, f, g, h};
    for (size_t i = 0; i < 8; ++i) {
      state_[i] += add[i];
    }
  }

  std::array<uint32_t, 8> state_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<uint8_t, 64> block_{};
  size_t block_used_ = 0;
  uint64_t total_bytes_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Small codecs.

std::string to_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    auto b = static_cast<uint8_t>(c);
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xF]);
  }
  return out;
}

std::string from_hex(std::string_view hex, std::string_view what) {
  if (hex.size() % 2 != 0) {
    throw DescriptionError(std::string(what) + ": odd number of hex digits");
  }
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    uint8_t byte = 0;
    auto [end, ec] = std::from_chars(hex.data() + 2 * i, hex.data() + 2 * i + 2, byte, 16);
    if (ec != std::errc() || end != hex.data() + 2 * i + 2) {
      throw DescriptionError(std::string(what) + ": '" + std::string(hex.substr(2 * i, 2)) + "' is not a hex byte");
    }
    out[i] = static_cast<char>(byte);
  }
  return out;
}

// Strict UTF-8 as Python decodes it: no overlong forms, no surrogates, nothing past U+10FFFF.
bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto lead = static_cast<uint8_t>(s[i]);
    size_t extra = 0;
    uint32_t min_code_point = 0;
    uint32_t code_point = 0;
    if (lead < 0x80) {
      ++i;
      continue;
    } else if ((lead & 0xE0) == 0xC0) {
      extra = 1, min_code_point = 0x80, code_point = lead & 0x1Fu;
    } else if ((lead & 0xF0) == 0xE0) {
      extra = 2, min_code_point = 0x800, code_point = lead & 0x0Fu;
    } else if ((lead & 0xF8) == 0xF0) {
      extra = 3, min_code_point = 0x10000, code_point = lead & 0x07u;
    } else {
      return false;
    }
    if (s.size() - i <= extra) {
      return false;
    }
    for (size_t k = 1; k <= extra; ++k) {
      auto next = static_cast<uint8_t>(s[i + k]);
      if ((next & 0xC0) != 0x80) {
        return false;
      }
      code_point = code_point << 6 | (next & 0x3Fu);
    }
    if (code_point < min_code_point || code_point > 0x10FFFF || (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

std::string bits_hex(uint64_t bits, int hex_digits) {
  std::string out = "0x";
  for (int shift = 4 * (hex_digits - 1); shift >= 0; shift -= 4) {
    out.push_back("0123456789abcdef"[(bits >> shift) & 0xF]);
  }
  return out;
}

ValueType value_type_from_name(std::string_view name, std::string_view where) {
  for (int32_t id = 0; id < archreg::gguf::kValueTypeCount; ++id) {
    auto type = static_cast<ValueType>(id);
    if (archreg::gguf::value_type_name(type) == name) {
      return type;
    }
  }
  throw DescriptionError(std::string(where) + ": unknown value type '" + std::string(name) + "'");
}

// ---------------------------------------------------------------------------------------------
// JSON description -> MetaValue.

MetaValue parse_value(const json& j, ValueType type, const std::string& where);

MetaArray parse_array(const json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("element_type") || !j.contains("value") || !j.at("value").is_array()) {
    throw DescriptionError(where + ": an array needs \"element_type\" and a list \"value\"");
  }
  MetaArray array;
  array.element_type = value_type_from_name(j.at("element_type").get<std::string>(), where);
  const json& items = j.at("value");
  array.items.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    array.items.push_back(parse_value(items[i], array.element_type, where + "[" + std::to_string(i) + "]"));
  }
  return array;
}

template <class T>
T parse_integer(const json& j, const std::string& where) {
  if (j.is_number_unsigned()) {
    auto v = j.get<uint64_t>();
    if (std::in_range<T>(v)) {
      return static_cast<T>(v);
    }
  } else if (j.is_number_integer()) {
    auto v = j.get<int64_t>();
    if (std::in_range<T>(v)) {
      return static_cast<T>(v);
    }
  } else {
    throw DescriptionError(where + ": expected an integer, found " + j.dump());
  }
  throw DescriptionError(where + ": " + j.dump() + " is out of range for its type");
}

// A number, or a bit pattern "0x..." (the only way to say NaN, infinities or a NaN payload).
template <class Float, class Bits>
Float parse_float(const json& j, const std::string& where) {
  if (j.is_string()) {
    auto text = j.get<std::string>();
    Bits bits = 0;
    const bool has_prefix = text.size() > 2 && text.compare(0, 2, "0x") == 0;
    const char* last = text.data() + text.size();
    auto [end, ec] =
        has_prefix ? std::from_chars(text.data() + 2, last, bits, 16) : std::from_chars_result{text.data(), std::errc::invalid_argument};
    if (ec != std::errc() || end != last) {
      throw DescriptionError(where + ": expected a number or a \"0x...\" bit pattern, found " + j.dump());
    }
    return std::bit_cast<Float>(bits);
  }
  if (!j.is_number()) {
    throw DescriptionError(where + ": expected a number, found " + j.dump());
  }
  auto wide = j.get<double>();
  auto value = static_cast<Float>(wide);
  if (static_cast<double>(value) != wide) {
    throw DescriptionError(where + ": " + j.dump() + " is not exactly representable");
  }
  return value;
}

MetaValue parse_value(const json& j, ValueType type, const std::string& where) {
  switch (type) {
    case ValueType::kUint8: return parse_integer<uint8_t>(j, where);
    case ValueType::kInt8: return parse_integer<int8_t>(j, where);
    case ValueType::kUint16: return parse_integer<uint16_t>(j, where);
    case ValueType::kInt16: return parse_integer<int16_t>(j, where);
    case ValueType::kUint32: return parse_integer<uint32_t>(j, where);
    case ValueType::kInt32: return parse_integer<int32_t>(j, where);
    case ValueType::kUint64: return parse_integer<uint64_t>(j, where);
    case ValueType::kInt64: return parse_integer<int64_t>(j, where);
    case ValueType::kFloat32: return parse_float<float, uint32_t>(j, where);
    case ValueType::kFloat64: return parse_float<double, uint64_t>(j, where);
    case ValueType::kBool:
      if (!j.is_boolean()) {
        throw DescriptionError(where + ": expected true or false, found " + j.dump());
      }
      return j.get<bool>();
    case ValueType::kString:
      if (j.is_string()) {
        return j.get<std::string>();
      }
      if (j.is_object() && j.contains("hex")) {
        return from_hex(j.at("hex").get<std::string>(), where);
      }
      throw DescriptionError(where + ": expected a string, found " + j.dump());
    case ValueType::kArray: return parse_array(j, where);
  }
  throw DescriptionError(where + ": invalid value type");
}

// ---------------------------------------------------------------------------------------------
// Reader values -> JSON (the inverse of parse_value).

template <class Float, class Bits>
json float_json(Float value) {
  if (std::isfinite(value)) {
    return static_cast<double>(value);
  }
  return bits_hex(std::bit_cast<Bits>(value), static_cast<int>(2 * sizeof(Bits)));
}

json string_json(std::string_view s) {
  if (is_valid_utf8(s)) {
    return std::string(s);
  }
  return json{{"hex", to_hex(s)}};
}

json value_json(const archreg::gguf::Value& value);

json array_items_json(const archreg::gguf::Value& array) {
  json items = json::array();
  for (const archreg::gguf::Value& item : array) {
    if (item.is_array()) {
      items.push_back({{"element_type", archreg::gguf::value_type_name(item.element_type())}, {"value", array_items_json(item)}});
    } else {
      items.push_back(value_json(item));
    }
  }
  return items;
}

json value_json(const archreg::gguf::Value& value) {
  switch (value.type()) {
    case ValueType::kUint8: return value.get<uint8_t>();
    case ValueType::kInt8: return value.get<int8_t>();
    case ValueType::kUint16: return value.get<uint16_t>();
    case ValueType::kInt16: return value.get<int16_t>();
    case ValueType::kUint32: return value.get<uint32_t>();
    case ValueType::kInt32: return value.get<int32_t>();
    case ValueType::kUint64: return value.get<uint64_t>();
    case ValueType::kInt64: return value.get<int64_t>();
    case ValueType::kFloat32: return float_json<float, uint32_t>(value.get<float>());
    case ValueType::kFloat64: return float_json<double, uint64_t>(value.get<double>());
    case ValueType::kBool: return value.get<bool>();
    case ValueType::kString: return string_json(value.as_string());
    case ValueType::kArray: return array_items_json(value);
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Commands.

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    throw DescriptionError(path + ": cannot open");
  }
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw DescriptionError(path + ": " + e.what());
  }
}

void write_tensor_data(archreg::gguf::Writer& writer, size_t index, const json& tensor, const std::string& where) {
  const uint64_t n_bytes = writer.tensor_bytes(index);
  if (tensor.contains("data_hex")) {
    std::string bytes = from_hex(tensor.at("data_hex").get<std::string>(), where);
    if (bytes.size() != n_bytes) {
      throw DescriptionError(where + ": data_hex has " + std::to_string(bytes.size()) + " bytes, the tensor needs " +
                             std::to_string(n_bytes));
    }
    writer.write(std::as_bytes(std::span(bytes)));
    return;
  }
  if (!tensor.contains("data_seed")) {
    throw DescriptionError(where + ": needs \"data_hex\" or \"data_seed\"");
  }
  // Streamed in chunks (a multiple of 8, as SplitMix64::fill requires) so big tensors are cheap.
  archreg::testing::SplitMix64 stream(tensor.at("data_seed").get<uint64_t>());
  std::vector<std::byte> chunk(1 << 20);
  for (uint64_t done = 0; done < n_bytes;) {
    auto n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), n_bytes - done));
    std::span<std::byte> part(chunk.data(), n);
    stream.fill(part);
    writer.write(part);
    done += n;
  }
}

int write_command(const std::string& description_path, const std::string& output_path) {
  const json description = read_json_file(description_path);
  archreg::gguf::Writer writer(output_path, {.overwrite = true});

  for (const json& entry : description.value("metadata", json::array())) {
    const auto key = entry.at("key").get<std::string>();
    const std::string where = "metadata '" + key + "'";
    const ValueType type = value_type_from_name(entry.at("type").get<std::string>(), where);
    writer.add(key, type == ValueType::kArray ? MetaValue(parse_array(entry, where)) : parse_value(entry.at("value"), type, where));
  }

  const json tensors = description.value("tensors", json::array());
  for (const json& tensor : tensors) {
    const auto name = tensor.at("name").get<std::string>();
    const auto type_name = tensor.at("type").get<std::string>();
    const auto type = archreg::gguf::ggml_type_from_name(type_name);
    if (!type) {
      throw DescriptionError("tensor '" + name + "': unknown ggml type '" + type_name + "'");
    }
    const auto shape = tensor.at("shape").get<std::vector<uint64_t>>();
    writer.add_tensor(name, *type, shape);
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    write_tensor_data(writer, i, tensors[i], "tensor '" + tensors[i].at("name").get<std::string>() + "'");
  }
  writer.commit();
  return 0;
}

int dump_command(const std::string& path) {
  const auto reader = archreg::gguf::Reader::open(path);
  json out;
  out["version"] = reader.version();
  out["alignment"] = reader.alignment();
  out["data_offset"] = reader.data_section_offset();
  out["file_size"] = reader.file_size();

  json metadata = json::array();
  for (const archreg::gguf::KeyValue& kv : reader.metadata()) {
    const archreg::gguf::Value value = reader.value(kv);
    json entry = {{"key", string_json(kv.key)}, {"type", archreg::gguf::value_type_name(kv.type)}};
    if (value.is_array()) {
      entry["element_type"] = archreg::gguf::value_type_name(value.element_type());
    }
    entry["value"] = value_json(value);
    metadata.push_back(std::move(entry));
  }
  out["metadata"] = std::move(metadata);

  json tensors = json::array();
  for (const archreg::gguf::TensorInfo& tensor : reader.tensors()) {
    Sha256 hash;
    hash.update(reader.tensor_data(tensor));
    tensors.push_back({{"name", string_json(tensor.name)},
                       {"type", archreg::gguf::ggml_type(tensor.type)->name},
                       {"type_id", tensor.type},
                       {"shape", std::vector<uint64_t>(tensor.shape().begin(), tensor.shape().end())},
                       {"offset", tensor.offset},
                       {"data_offset", tensor.data_offset},
                       {"n_bytes", tensor.n_bytes},
                       {"sha256", hash.hex_digest()}});
  }
  out["tensors"] = std::move(tensors);

  const std::string text = out.dump() + "\n";
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

int usage() {
  std::cerr << "usage: gguf-testtool write DESC.json OUT.gguf\n"
               "       gguf-testtool dump FILE.gguf\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.size() == 3 && args[0] == "write") {
      return write_command(args[1], args[2]);
    }
    if (args.size() == 2 && args[0] == "dump") {
      return dump_command(args[1]);
    }
    return usage();
  } catch (const archreg::gguf::Error& e) {
    std::cerr << "gguf-testtool: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "gguf-testtool: " << e.what() << "\n";
    return 1;
  }
}
