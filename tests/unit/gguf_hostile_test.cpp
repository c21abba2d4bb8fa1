// The reader against hostile files: every class of bad input in GGUF-FACTS.md ("Bad inputs a
// reader must survive") must end in a gguf::Error that says what was wrong, never a crash, an
// out-of-bounds read, another exception type or an unbounded allocation. Each case also names
// the bug it guards against where one is known (CVE, TALOS report, upstream crash).
//
// Every hostile buffer is handed to the reader as an exact-size heap copy, so under ASan a read
// one byte past the end of the "file" is reported rather than landing in spare vector capacity.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "gguf/error.hpp"
#include "gguf/reader.hpp"
#include "gguf/value.hpp"
#include "gguf_bytes.hpp"

namespace archreg::gguf {
// gtest prints a failed expectation's Error through this instead of as raw object bytes.
[[maybe_unused]] static void PrintTo(const Error& error, std::ostream* os) {
  *os << error.what();
}
}  // namespace archreg::gguf

namespace {

using archreg::gguf::Error;
using archreg::gguf::make_array;
using archreg::gguf::make_string_array;
using archreg::gguf::MetaValue;
using archreg::gguf::Reader;
using archreg::gguf::Value;
using archreg::gguf::ValueType;
using archreg::test::ExactCopy;
using archreg::test::GgufBytes;
namespace tag = archreg::test::tag;
namespace ggml = archreg::test::ggml;
using ::testing::_;
using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::Ge;
using ::testing::HasSubstr;
using ::testing::Le;
using ::testing::Optional;
using ::testing::StartsWith;

constexpr const char* kFileName = "hostile.gguf";
constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
constexpr uint64_t kTopBit = uint64_t{1} << 63;  // INT64_MAX + 1: "negative" as a signed count

// The gguf::Error that `action` threw, or nothing if it returned. Any other exception escapes
// and fails the test: hostile input must surface as gguf::Error only.
template <class Action>
std::optional<Error> error_from(Action action) {
  try {
    action();
  } catch (const Error& error) {
    return error;
  }
  return std::nullopt;
}

// The Error the reader threw for these bytes, or nothing if it accepted them.
std::optional<Error> read_error(std::span<const std::byte> bytes) {
  const ExactCopy file(bytes);
  return error_from([&] { Reader::from_memory(file.span(), kFileName); });
}
std::optional<Error> read_error(const GgufBytes& file) {
  return read_error(file.span());
}

// Matchers on the parts of an Error, composed as Rejected(WithMessage(...), WithSubject(...), ...).
template <class M>
auto WithMessage(M matcher) {
  return ::testing::Property("message", &Error::message, matcher);
}
template <class M>
auto WithSubject(M matcher) {
  return ::testing::Property("subject", &Error::subject, matcher);
}
template <class M>
auto WithOffset(M matcher) {
  return ::testing::Property("offset", &Error::offset, matcher);
}
auto OffsetSet() {
  return WithOffset(Optional(_));
}
// The error points into [first, last]: the entry or tensor info that is wrong.
auto OffsetWithin(uint64_t first, uint64_t last) {
  return WithOffset(Optional(AllOf(Ge(first), Le(last))));
}
auto KeySubject(const std::string& key) {
  return WithSubject(HasSubstr("key '" + key + "'"));
}
auto TensorSubject(const std::string& name) {
  return WithSubject(HasSubstr("tensor '" + name + "'"));
}
template <class... M>
auto Rejected(M... matchers) {
  return Optional(AllOf(matchers...));
}

// --- File shapes the cases start from ---------------------------------------------------------

// A file with no metadata and the given tensor infos, padded to the default alignment of 32,
// followed by `data_bytes` of tensor data.
template <class WriteInfos>
GgufBytes tensor_file(uint64_t n_tensors, WriteInfos write_infos, uint64_t data_bytes) {
  GgufBytes file;
  file.header(3, n_tensors, 0);
  write_infos(file);
  file.align(32).data(data_bytes);
  return file;
}

// One tensor named "t"; `data_bytes` of data follow the header.
GgufBytes one_tensor(std::initializer_list<uint64_t> shape, int32_t type, uint64_t data_bytes = 32, uint64_t offset = 0) {
  return tensor_file(
      1, [&](GgufBytes& f) { f.tensor_info("t", shape, type, offset); }, data_bytes);
}

// A file holding one malformed part, a metadata entry or a tensor info, and where it lies.
struct BadPart {
  GgufBytes file;
  uint64_t begin = 0;
  uint64_t end = 0;
};
template <class WritePart>
BadPart bad_part(uint64_t n_tensors, uint64_t n_kv, WritePart write_part) {
  BadPart c;
  c.file.header(3, n_tensors, n_kv);
  c.begin = c.file.size();
  write_part(c.file);
  c.end = c.file.size();
  return c;
}

// The one metadata entry written by `write_entry` (at least the 14 bytes the smallest entry
// takes, so the count check passes) and nothing else.
template <class WriteEntry>
BadPart bad_entry(WriteEntry write_entry) {
  return bad_part(0, 1, write_entry);
}

// One tensor "t" with the info written by `write_info`, followed by 64 bytes of data.
template <class WriteInfo>
BadPart bad_tensor_info(WriteInfo write_info) {
  BadPart c = bad_part(1, 0, write_info);
  c.file.align(32).data(64);
  return c;
}

// A file with `general.alignment` written by `write_alignment` and one 32-byte F32 tensor.
template <class WriteAlignment>
GgufBytes alignment_file(WriteAlignment write_alignment) {
  GgufBytes file;
  file.header(3, 1, 1);
  write_alignment(file);
  file.tensor_info("t", {8}, ggml::kF32, 0).align(32).data(32);
  return file;
}

// `levels` arrays, each holding the next as its only element, innermost holding one UINT8.
GgufBytes nested_arrays(uint64_t levels) {
  GgufBytes file;
  file.header(3, 0, 1).key("nested", tag::kArray);
  for (uint64_t level = 1; level < levels; ++level) file.array_header(tag::kArray, 1);
  file.array_header(tag::kUint8, 1).u8(7);
  return file;
}

// --- Size, magic, version ----------------------------------------------------------------------

TEST(GgufHostile, EmptyFile) {
  EXPECT_THAT(read_error(GgufBytes{}), Rejected(WithMessage(HasSubstr("needs at least 24"))));
}

TEST(GgufHostile, FourByteFile) {
  EXPECT_THAT(read_error(GgufBytes{}.raw("GGUF")), Rejected(WithMessage(HasSubstr("needs at least 24"))));
}

TEST(GgufHostile, OneByteShortOfHeader) {
  GgufBytes file;
  file.header(3, 0, 0).truncate(23);
  EXPECT_THAT(read_error(file), Rejected(WithMessage(HasSubstr("needs at least 24"))));
}

TEST(GgufHostile, BadMagic) {
  // Older llama.cpp formats, the magic byte-swapped, and nothing at all.
  for (std::string_view magic :
       {std::string_view("GGML"), std::string_view("GGJT"), std::string_view("FUGG"), std::string_view("\0\0\0\0", 4)}) {
    SCOPED_TRACE(magic);
    GgufBytes file;
    file.raw(magic).u32(3).u64(0).u64(0).fill(32);
    EXPECT_THAT(read_error(file), Rejected(WithMessage(HasSubstr("bad magic")), WithSubject("header"), WithOffset(Optional(0u))));
  }
}

TEST(GgufHostile, WhatNamesFileOffsetSubjectAndMessage) {
  GgufBytes file;
  file.raw("GGML").u32(3).u64(0).u64(0);
  const auto error = read_error(file);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->file(), kFileName);
  EXPECT_THAT(std::string(error->what()), AllOf(StartsWith("hostile.gguf: byte 0: header: "), EndsWith(error->message())));
}

TEST(GgufHostile, UnsupportedVersions) {
  for (uint32_t version : {0u, 1u, 4u, 0xFFFFFFFFu}) {
    SCOPED_TRACE(version);
    GgufBytes file = one_tensor({8}, ggml::kF32);
    file.patch_u32(4, version);
    EXPECT_THAT(read_error(file),
                Rejected(WithMessage(HasSubstr("unsupported GGUF version")), WithSubject("header"), WithOffset(Optional(4u))));
  }
}

TEST(GgufHostile, BigEndianFile) {
  // gguf-py writes the magic little-endian even for big-endian files; the rest is swapped.
  GgufBytes file = one_tensor({8}, ggml::kF32);
  file.patch_u32(4, 0x03000000);
  EXPECT_THAT(read_error(file),
              Rejected(WithMessage(HasSubstr("unsupported GGUF version")), WithMessage(HasSubstr("big-endian")), WithOffset(Optional(4u))));
}

// --- Counts ------------------------------------------------------------------------------------

TEST(GgufHostile, TensorCountHuge) {
  for (uint64_t n_tensors : {kTopBit, kU64Max, uint64_t{1} << 40, uint64_t{1'000'000}}) {
    SCOPED_TRACE(n_tensors);
    GgufBytes file;
    file.header(3, n_tensors, 0).tensor_info("t", {8}, ggml::kF32, 0).align(32).data(32);
    EXPECT_THAT(read_error(file), Rejected(WithMessage(HasSubstr("tensor count")), OffsetSet()));
  }
}

TEST(GgufHostile, MetadataCountHuge) {
  for (uint64_t n_kv : {kTopBit, kU64Max, uint64_t{1} << 40, uint64_t{1'000'000}}) {
    SCOPED_TRACE(n_kv);
    GgufBytes file;
    file.header(3, 0, n_kv).kv_u32("general.alignment", 32).align(32);
    EXPECT_THAT(read_error(file), Rejected(WithMessage(HasSubstr("metadata count")), OffsetSet()));
  }
}

// --- Strings (TALOS-2024-1913: a huge string length read past the buffer) ----------------------

TEST(GgufHostile, KeyLengthHuge) {
  // Position 32 is right after the key's length field; 2^64 - 16 makes position + length wrap
  // to 16, inside the file, which fools a bounds check written as `pos + len <= size`.
  for (uint64_t length : {kU64Max, kTopBit, kU64Max - 15, uint64_t{100}}) {
    SCOPED_TRACE(length);
    GgufBytes file;
    file.header(3, 0, 1).str_claiming(length, "general.name").i32(tag::kUint8).u8(1).fill(30);
    EXPECT_THAT(read_error(file), Rejected(WithMessage(HasSubstr("string length")), OffsetSet()));
  }
}

TEST(GgufHostile, KeyLengthOnePastEnd) {
  // After the length field: "abc", a type tag and a UINT8 are 8 bytes; claim 9.
  GgufBytes file;
  file.header(3, 0, 1).str_claiming(9, "abc").i32(tag::kUint8).u8(1);
  EXPECT_THAT(read_error(file), Rejected(WithMessage(HasSubstr("string length")), OffsetSet()));
}

TEST(GgufHostile, StringValueLengthHuge) {
  for (uint64_t length : {kU64Max, kTopBit, uint64_t{5}}) {
    SCOPED_TRACE(length);
    const auto c = bad_entry([&](GgufBytes& f) { f.key("general.name", tag::kString).str_claiming(length, "tiny"); });
    EXPECT_THAT(read_error(c.file),
                Rejected(WithMessage(HasSubstr("string length")), KeySubject("general.name"), OffsetWithin(c.begin, c.end)));
  }
}

TEST(GgufHostile, StringArrayElementLengthHuge) {
  // Arrays are indexed lazily, but finding a string array's end means walking its lengths.
  const auto c =
      bad_entry([](GgufBytes& f) { f.kv_array_header("tokenizer.ggml.tokens", tag::kString, 2).str("a").str_claiming(kU64Max - 3, "b"); });
  EXPECT_THAT(read_error(c.file), Rejected(WithMessage(HasSubstr("string length")), KeySubject("tokenizer.ggml.tokens"), OffsetSet()));
}

TEST(GgufHostile, TensorNameLengthHuge) {
  for (uint64_t length : {kU64Max, kTopBit, uint64_t{4096}}) {
    SCOPED_TRACE(length);
    GgufBytes file;
    file.header(3, 1, 0).str_claiming(length, "t").u32(1).u64(8).i32(ggml::kF32).u64(0);
    file.align(32).data(32);
    EXPECT_THAT(read_error(file), Rejected(WithMessage(HasSubstr("string length")), OffsetSet()));
  }
}

TEST(GgufHostile, ValueCutShort) {
  const auto c = bad_entry([](GgufBytes& f) { f.key("a.b", tag::kUint64).u32(0); });
  EXPECT_THAT(read_error(c.file),
              Rejected(WithMessage(HasSubstr("unexpected end of file")), KeySubject("a.b"), OffsetWithin(c.begin, c.end)));
}

// --- Value types ---------------------------------------------------------------------------------

TEST(GgufHostile, UnknownValueType) {
  for (int32_t type : {13, 14, -1, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()}) {
    SCOPED_TRACE(type);
    const auto c = bad_entry([&](GgufBytes& f) { f.key("a.b", type).u32(0).u32(0); });
    EXPECT_THAT(read_error(c.file),
                Rejected(WithMessage(HasSubstr("unknown value type")), KeySubject("a.b"), OffsetWithin(c.begin, c.end)));
  }
}

TEST(GgufHostile, UnknownArrayElementType) {
  for (int32_t type : {13, -1}) {
    SCOPED_TRACE(type);
    const auto c = bad_entry([&](GgufBytes& f) { f.kv_array_header("a.b", type, 1).u32(0); });
    EXPECT_THAT(read_error(c.file),
                Rejected(WithMessage(HasSubstr("unknown value type")), KeySubject("a.b"), OffsetWithin(c.begin, c.end)));
  }
}

TEST(GgufHostile, ArrayCountTooLarge) {
  struct Case {
    int32_t element_type;
    uint64_t count;
  };
  // Eight bytes of elements follow each header. 2^62 UINT32 and 2^61 UINT64 are 2^64 bytes:
  // a size computed as count * width wraps to 0 and passes a naive bounds check. So does
  // 2^63 strings times their minimum of 8 bytes each.
  for (const Case& c : {Case{tag::kUint8, kU64Max}, Case{tag::kUint8, 9}, Case{tag::kUint32, uint64_t{1} << 62}, Case{tag::kUint32, 3},
                        Case{tag::kUint64, uint64_t{1} << 61}, Case{tag::kBool, kTopBit}, Case{tag::kString, kTopBit},
                        Case{tag::kString, 2}, Case{tag::kArray, kTopBit}}) {
    SCOPED_TRACE(testing::Message() << "element type " << c.element_type << ", count " << c.count);
    const auto entry = bad_entry([&](GgufBytes& f) { f.kv_array_header("a.b", c.element_type, c.count).u32(0).u32(0); });
    EXPECT_THAT(read_error(entry.file), Rejected(WithMessage(HasSubstr("array of")), KeySubject("a.b"), OffsetSet()));
  }
}

// gguf-py hit Python's recursion limit on deeply nested arrays; a recursive C++ reader would
// overflow its stack instead.
TEST(GgufHostile, ArraysNestedTooDeep) {
  for (uint64_t levels : {uint64_t{1'000}, uint64_t{100'000}}) {
    SCOPED_TRACE(levels);
    EXPECT_THAT(read_error(nested_arrays(levels)), Rejected(WithMessage(HasSubstr("nested deeper")), KeySubject("nested"), OffsetSet()));
  }
}

TEST(GgufHostile, ArraysNestedOneLevelTooDeep) {
  EXPECT_THAT(read_error(nested_arrays(archreg::gguf::kMaxArrayDepth + 1)),
              Rejected(WithMessage(HasSubstr("nested deeper")), KeySubject("nested")));
}

TEST(GgufHostile, ArraysNestedToTheLimitAreAccepted) {
  const GgufBytes file = nested_arrays(archreg::gguf::kMaxArrayDepth);
  const Reader reader = Reader::from_memory(file.span(), kFileName);
  Value value = reader.get("nested");
  for (uint32_t level = 1; level < archreg::gguf::kMaxArrayDepth; ++level) {
    ASSERT_EQ(value.element_type(), ValueType::kArray);
    value = value[0];
  }
  EXPECT_EQ(value[0].get<uint8_t>(), 7);
}

// --- Keys --------------------------------------------------------------------------------------

TEST(GgufHostile, DuplicateKey) {
  GgufBytes file;
  file.header(3, 0, 2).kv_string("general.name", "a");
  const uint64_t second = file.size();
  file.kv_string("general.name", "b");
  const uint64_t end = file.size();
  file.align(32);
  EXPECT_THAT(read_error(file), Rejected(WithMessage(HasSubstr("duplicate key")), KeySubject("general.name"), OffsetWithin(second, end)));
}

TEST(GgufHostile, EmptyKey) {
  const auto c = bad_entry([](GgufBytes& f) { f.kv_u32("", 1); });
  EXPECT_THAT(read_error(c.file), Rejected(WithMessage(HasSubstr("empty key")), OffsetWithin(c.begin, c.end)));
}

// --- general.alignment -------------------------------------------------------------------------

// Upstream aborts on a general.alignment of any type but UINT32.
TEST(GgufHostile, AlignmentOfWrongType) {
  EXPECT_THAT(read_error(alignment_file([](GgufBytes& f) { f.kv_i32("general.alignment", 32); })),
              Rejected(WithMessage(HasSubstr("expected type UINT32, found INT32")), KeySubject("general.alignment"), OffsetSet()));
  EXPECT_THAT(read_error(alignment_file([](GgufBytes& f) { f.kv_u64("general.alignment", 32); })),
              Rejected(WithMessage(HasSubstr("expected type UINT32, found UINT64")), KeySubject("general.alignment")));
  EXPECT_THAT(read_error(alignment_file([](GgufBytes& f) { f.kv_string("general.alignment", "32"); })),
              Rejected(WithMessage(HasSubstr("expected type UINT32, found STRING")), KeySubject("general.alignment")));
}

TEST(GgufHostile, AlignmentNotAPowerOfTwo) {
  for (uint32_t alignment : {0u, 3u, 48u, 0x7FFFFFFFu, 0xFFFFFFFFu}) {
    SCOPED_TRACE(alignment);
    const GgufBytes file = alignment_file([&](GgufBytes& f) { f.kv_u32("general.alignment", alignment); });
    EXPECT_THAT(read_error(file), Rejected(WithMessage(HasSubstr("power of two")), KeySubject("general.alignment"), OffsetSet()));
  }
}

// 2^31 is a power of two, but padding to it in 32-bit arithmetic wraps to 0, and the padded
// header lies far past the end of any test file.
TEST(GgufHostile, AlignmentTwoToThe31) {
  const GgufBytes with_tensor = alignment_file([](GgufBytes& f) { f.kv_u32("general.alignment", 0x80000000u); });
  EXPECT_THAT(read_error(with_tensor), Rejected(WithMessage(AnyOf(HasSubstr("power of two"), HasSubstr("past the end of the file")))));

  GgufBytes no_tensors;
  no_tensors.header(3, 0, 1).kv_u32("general.alignment", 0x80000000u).align(32);
  const ExactCopy copy(no_tensors.span());
  // Rejecting the alignment outright is fine too; accepting it must not wrap.
  static_cast<void>(error_from([&] {
    const Reader reader = Reader::from_memory(copy.span(), kFileName);
    EXPECT_EQ(reader.data_section_offset(), uint64_t{0x80000000u});
    EXPECT_EQ(reader.data_section_size(), 0u);
  }));
}

// --- Tensor infos ------------------------------------------------------------------------------

TEST(GgufHostile, TensorNameTooLong) {
  for (size_t length : {size_t{64}, size_t{1000}}) {
    SCOPED_TRACE(length);
    const std::string name(length, 'n');
    const auto c = bad_tensor_info([&](GgufBytes& f) { f.tensor_info(name, {8}, ggml::kF32, 0); });
    EXPECT_THAT(read_error(c.file), Rejected(WithMessage(HasSubstr("at most 63")), OffsetWithin(c.begin, c.end)));
  }
}

TEST(GgufHostile, EmptyTensorName) {
  const auto c = bad_tensor_info([](GgufBytes& f) { f.tensor_info("", {8}, ggml::kF32, 0); });
  EXPECT_THAT(read_error(c.file), Rejected(WithMessage(HasSubstr("empty tensor name")), OffsetWithin(c.begin, c.end)));
}

TEST(GgufHostile, DuplicateTensorName) {
  GgufBytes file;
  file.header(3, 2, 0).tensor_info("blk.0.attn_q.weight", {8}, ggml::kF32, 0);
  const uint64_t second = file.size();
  file.tensor_info("blk.0.attn_q.weight", {8}, ggml::kF32, 32);
  const uint64_t end = file.size();
  file.align(32).data(64);
  EXPECT_THAT(read_error(file),
              Rejected(WithMessage(HasSubstr("duplicate tensor")), TensorSubject("blk.0.attn_q.weight"), OffsetWithin(second, end)));
}

TEST(GgufHostile, DimensionCountOutOfRange) {
  for (uint32_t n_dims : {0u, 5u, 0xFFFFFFFFu}) {
    SCOPED_TRACE(n_dims);
    const auto c = bad_tensor_info([&](GgufBytes& f) {
      const std::vector<uint64_t> dims(std::min(n_dims, 5u), 8);
      f.tensor_info_raw("t", n_dims, dims, ggml::kF32, 0);
    });
    EXPECT_THAT(read_error(c.file), Rejected(WithMessage(HasSubstr("n_dims")), TensorSubject("t"), OffsetWithin(c.begin, c.end)));
  }
}

// Each shape, as an F32 tensor "t", is rejected with a message matching `message`, and the
// error points into the tensor's info.
template <class M>
void expect_shapes_rejected(const std::vector<std::vector<uint64_t>>& shapes, M message) {
  for (const std::vector<uint64_t>& shape : shapes) {
    SCOPED_TRACE(testing::PrintToString(shape));
    const auto c =
        bad_tensor_info([&](GgufBytes& f) { f.tensor_info_raw("t", static_cast<uint32_t>(shape.size()), shape, ggml::kF32, 0); });
    EXPECT_THAT(read_error(c.file), Rejected(WithMessage(message), TensorSubject("t"), OffsetWithin(c.begin, c.end)));
  }
}

TEST(GgufHostile, ZeroDimension) {
  expect_shapes_rejected({{0}, {8, 0}, {8, 1, 1, 0}}, HasSubstr("must be at least 1"));
}

TEST(GgufHostile, DimensionAboveInt64Max) {
  expect_shapes_rejected({{kTopBit}, {8, kU64Max}, {8, 1, 1, kTopBit + 8}}, HasSubstr("exceeds INT64_MAX"));
}

// CVE-2026-33298, CVE-2026-27940: the product of the dimensions wraps. 2^16 four times is 2^64,
// which wraps to 0 bytes; (2^62 + 2) * 4 wraps to 8 elements, exactly the 32 bytes present, so
// a reader that trusts the wrapped size hands out a tensor that "fits". 2^62 * 2 fits in
// uint64_t but not in the int64_t that ggml counts elements in.
TEST(GgufHostile, ElementCountOverflows) {
  expect_shapes_rejected({{uint64_t{1} << 32, uint64_t{1} << 32},
                          {uint64_t{1} << 16, uint64_t{1} << 16, uint64_t{1} << 16, uint64_t{1} << 16},
                          {(uint64_t{1} << 62) + 2, 4},
                          {uint64_t{1} << 31, uint64_t{1} << 31, uint64_t{1} << 31},
                          {uint64_t{1} << 62, 2}},
                         AllOf(HasSubstr("element count"), HasSubstr("overflows")));
}

// CVE-2025-53630: the element count fits but elements times bytes per element does not.
// (2^62 + 8) F32 elements are 2^64 + 32 bytes, which wraps to the 32 bytes present.
TEST(GgufHostile, ByteSizeOverflows) {
  struct Case {
    int32_t type;
    uint64_t ne0;
  };
  for (const Case& c : {Case{ggml::kF32, uint64_t{1} << 62}, Case{ggml::kF32, (uint64_t{1} << 62) + 8}, Case{ggml::kF64, uint64_t{1} << 61},
                        Case{ggml::kI64, (uint64_t{1} << 61) + 4}}) {
    SCOPED_TRACE(testing::Message() << "type " << c.type << ", ne0 " << c.ne0);
    GgufBytes file = one_tensor({c.ne0}, c.type);
    EXPECT_THAT(read_error(file),
                Rejected(WithMessage(AllOf(HasSubstr("byte size"), HasSubstr("overflows"))), TensorSubject("t"), OffsetSet()));
  }
}

// 2^62 - 1 F32 elements are 2^64 - 4 bytes: no overflow yet, but padding that to the alignment
// wraps to 0. Rejecting sizes past INT64_MAX as overflowing is fine too.
TEST(GgufHostile, PaddedSizeWraps) {
  EXPECT_THAT(read_error(one_tensor({(uint64_t{1} << 62) - 1}, ggml::kF32)),
              Rejected(WithMessage(AnyOf(AllOf(HasSubstr("byte size"), HasSubstr("overflows")), HasSubstr("past the end of the file"))),
                       TensorSubject("t")));
}

TEST(GgufHostile, InvalidGgmlType) {
  for (int32_t type : {43, 44, 1000, -1, std::numeric_limits<int32_t>::min()}) {
    SCOPED_TRACE(type);
    const auto c = bad_tensor_info([&](GgufBytes& f) { f.tensor_info("t", {256}, type, 0); });
    EXPECT_THAT(read_error(c.file),
                Rejected(WithMessage(HasSubstr("invalid ggml type")), TensorSubject("t"), OffsetWithin(c.begin, c.end)));
  }
}

TEST(GgufHostile, RemovedGgmlType) {
  for (int32_t type : {4, 5, 31, 32, 33, 36, 37, 38}) {
    SCOPED_TRACE(type);
    const auto c = bad_tensor_info([&](GgufBytes& f) { f.tensor_info("t", {256}, type, 0); });
    EXPECT_THAT(read_error(c.file), Rejected(WithMessage(HasSubstr("was removed")), TensorSubject("t"), OffsetWithin(c.begin, c.end)));
  }
}

TEST(GgufHostile, RowNotAWholeNumberOfBlocks) {
  struct Case {
    int32_t type;
    std::vector<uint64_t> shape;
  };
  for (const Case& c : {Case{ggml::kQ4_0, {33}}, Case{ggml::kQ4_K, {32, 2}}, Case{ggml::kQ8_0, {16}}, Case{ggml::kMXFP4, {16, 4}}}) {
    SCOPED_TRACE(testing::Message() << "type " << c.type);
    const auto info =
        bad_tensor_info([&](GgufBytes& f) { f.tensor_info_raw("t", static_cast<uint32_t>(c.shape.size()), c.shape, c.type, 0); });
    EXPECT_THAT(read_error(info.file),
                Rejected(WithMessage(HasSubstr("not a multiple of the block size")), TensorSubject("t"), OffsetSet()));
  }
}

// --- Tensor data layout
// ----------------------------------------------------------------------------

// Two 32-byte F32 tensors "a" and "b" at the given offsets, with `data_bytes` of data.
GgufBytes two_tensors(uint64_t offset_a, uint64_t offset_b, uint64_t data_bytes, uint64_t ne0_a = 8) {
  return tensor_file(
      2, [&](GgufBytes& f) { f.tensor_info("a", {ne0_a}, ggml::kF32, offset_a).tensor_info("b", {8}, ggml::kF32, offset_b); }, data_bytes);
}

TEST(GgufHostile, OffsetNotAligned) {
  EXPECT_THAT(read_error(one_tensor({8}, ggml::kF32, 64, 4)),
              Rejected(WithMessage(HasSubstr("not a multiple of the alignment")), TensorSubject("t"), OffsetSet()));
  EXPECT_THAT(read_error(two_tensors(0, 36, 96)), Rejected(WithMessage(HasSubstr("not a multiple of the alignment")), TensorSubject("b")));
}

TEST(GgufHostile, OffsetsNotContiguous) {
  const auto out_of_place = [](const std::string& tensor) {
    return Rejected(WithMessage(HasSubstr("data offset")), WithMessage(HasSubstr("expected")), TensorSubject(tensor), OffsetSet());
  };
  EXPECT_THAT(read_error(two_tensors(0, 64, 128)), out_of_place("b")) << "gap";
  EXPECT_THAT(read_error(two_tensors(0, 32, 96, 16)), out_of_place("b")) << "overlap";
  EXPECT_THAT(read_error(two_tensors(0, 0, 64)), out_of_place("b")) << "same offset";
  EXPECT_THAT(read_error(two_tensors(32, 0, 64)), out_of_place("a")) << "wrong order";
  EXPECT_THAT(read_error(one_tensor({8}, ggml::kF32, 96, 32)), out_of_place("t")) << "first tensor not at 0";
}

// Ollama CVE-2026-7482: a tensor whose data runs past the end of the file was served from
// whatever memory followed the mapping, leaking heap contents.
TEST(GgufHostile, TensorDataPastEndOfFile) {
  EXPECT_THAT(read_error(one_tensor({1024}, ggml::kF32, 32)),
              Rejected(WithMessage(HasSubstr("past the end of the file")), TensorSubject("t"), OffsetSet()));
  // data_section_offset + offset wraps around to the start of the file.
  EXPECT_THAT(read_error(one_tensor({8}, ggml::kF32, 32, kU64Max - 31)),
              Rejected(WithMessage(AnyOf(HasSubstr("past the end of the file"), HasSubstr("expected"))), TensorSubject("t")));
  // Each size fits in int64_t, but padded and summed they reach 2^64, which wraps to 0.
  EXPECT_THAT(
      read_error(tensor_file(
          2, [](GgufBytes& f) { f.tensor_info("a", {kTopBit - 1}, ggml::kI8, 0).tensor_info("b", {kTopBit - 1}, ggml::kI8, kTopBit); },
          32)),
      Rejected(WithMessage(HasSubstr("past the end of the file")), TensorSubject("a")));
}

TEST(GgufHostile, DataSectionTruncated) {
  EXPECT_THAT(read_error(one_tensor({8}, ggml::kF32, 31)),
              Rejected(WithMessage(HasSubstr("past the end of the file")), TensorSubject("t")));
  EXPECT_THAT(read_error(two_tensors(0, 32, 48)), Rejected(WithMessage(HasSubstr("past the end of the file")), TensorSubject("b")));
  EXPECT_THAT(read_error(one_tensor({8}, ggml::kF32, 0)), Rejected(WithMessage(HasSubstr("past the end of the file")), TensorSubject("t")))
      << "no data section at all";
}

// --- Valid files ---------------------------------------------------------------------------------

constexpr uint64_t kQ8Bytes = 2 * 2 * 34;  // {64, 2} Q8_0: two rows of two 34-byte blocks
constexpr uint64_t kNormBytes = 64 * 4;    // {64} F32

// Every value type, nested arrays, alignment 64 and two tensors of different types.
GgufBytes every_type_file(uint32_t version = 3) {
  GgufBytes file;
  file.header(version, 2, 19)
      .kv_string("general.architecture", "llama")
      .kv_u8("test.u8", 200)
      .kv_i8("test.i8", -100)
      .kv_u16("test.u16", 60000)
      .kv_i16("test.i16", -30000)
      .kv_u32("test.u32", 4'000'000'000u)
      .kv_i32("test.i32", -2'000'000'000)
      .kv_f32("test.f32", 1.5f)
      .kv_bool("test.bool", true)
      .kv_string("test.string", "hello, gguf")
      .kv_u64("test.u64", uint64_t{1} << 40)
      .kv_i64("test.i64", -(int64_t{1} << 40))
      .kv_f64("test.f64", 2.25)
      .kv_u64("test.big_u64", kTopBit)
      .kv_u32_array("test.u32s", {1, 2, 3})
      .kv_string_array("tokenizer.ggml.tokens", {"<s>", "", "hello"})
      .kv_array_header("test.empty", tag::kFloat32, 0);
  file.key("test.nested", tag::kArray).array_header(tag::kArray, 2).array_header(tag::kInt8, 2).u8(1).u8(0xFF).array_header(tag::kInt8, 0);
  file.kv_u32("general.alignment", 64)
      .tensor_info("token_embd.weight", {64, 2}, ggml::kQ8_0, 0)
      .tensor_info("output_norm.weight", {64}, ggml::kF32, 192)
      .align(64)
      .data(kQ8Bytes, 1)
      .align(64)
      .data(kNormBytes, 7)
      .align(64);
  return file;
}

TEST(GgufValid, ScalarsReadBack) {
  const GgufBytes file = every_type_file();
  const Reader reader = Reader::from_memory(file.span(), kFileName);
  EXPECT_EQ(reader.version(), 3u);
  EXPECT_EQ(reader.alignment(), 64u);
  EXPECT_EQ(reader.file_size(), file.size());
  EXPECT_EQ(reader.metadata().size(), 19u);
  EXPECT_EQ(reader.get("general.architecture").as_string(), "llama");
  EXPECT_EQ(reader.get("test.u8").get<uint8_t>(), 200);
  EXPECT_EQ(reader.get("test.i8").get<int8_t>(), -100);
  EXPECT_EQ(reader.get("test.u16").get<uint16_t>(), 60000);
  EXPECT_EQ(reader.get("test.i16").get<int16_t>(), -30000);
  EXPECT_EQ(reader.get("test.u32").get<uint32_t>(), 4'000'000'000u);
  EXPECT_EQ(reader.get("test.i32").get<int32_t>(), -2'000'000'000);
  EXPECT_EQ(reader.get("test.f32").get<float>(), 1.5f);
  EXPECT_EQ(reader.get("test.bool").get<bool>(), true);
  EXPECT_EQ(reader.get("test.string").as_string(), "hello, gguf");
  EXPECT_EQ(reader.get("test.u64").get<uint64_t>(), uint64_t{1} << 40);
  EXPECT_EQ(reader.get("test.i64").get<int64_t>(), -(int64_t{1} << 40));
  EXPECT_EQ(reader.get("test.f64").get<double>(), 2.25);
  EXPECT_EQ(reader.get("general.alignment").get<uint32_t>(), 64u);

  EXPECT_EQ(reader.get("test.u16").as_int(), 60000);
  EXPECT_EQ(reader.get("test.i64").as_int(), -(int64_t{1} << 40));
  EXPECT_EQ(reader.get("test.f32").as_number(), 1.5);
  EXPECT_EQ(reader.get("test.i8").as_number(), -100.0);
}

TEST(GgufValid, MetadataIndexMatchesTheBytes) {
  const GgufBytes file = every_type_file();
  const Reader reader = Reader::from_memory(file.span(), kFileName);
  const archreg::gguf::KeyValue* kv = reader.find_key("test.u16");
  ASSERT_NE(kv, nullptr);
  EXPECT_EQ(kv->key, "test.u16");
  EXPECT_EQ(kv->type, ValueType::kUint16);
  // key length (8) + "test.u16" (8) + type tag (4) + value (2)
  EXPECT_EQ(kv->value_offset, kv->offset + 20);
  EXPECT_EQ(kv->end, kv->offset + 22);
  EXPECT_EQ(reader.raw_entry(*kv).size(), 22u);
  EXPECT_EQ(reader.value(*kv).get<uint16_t>(), 60000);
  EXPECT_EQ(reader.value(*kv).bytes().size(), 2u);
  EXPECT_EQ(reader.find_key("no.such.key"), nullptr);
  EXPECT_FALSE(reader.find("no.such.key").has_value());
  EXPECT_EQ(reader.metadata().front().key, "general.architecture");
  EXPECT_EQ(reader.metadata().back().key, "general.alignment");
}

TEST(GgufValid, ArraysReadBack) {
  const GgufBytes file = every_type_file();
  const Reader reader = Reader::from_memory(file.span(), kFileName);

  const Value numbers = reader.get("test.u32s");
  ASSERT_TRUE(numbers.is_array());
  EXPECT_EQ(numbers.element_type(), ValueType::kUint32);
  EXPECT_EQ(numbers.size(), 3u);
  EXPECT_EQ(numbers[2].get<uint32_t>(), 3u);
  EXPECT_EQ(numbers[1].path(), "test.u32s[1]");
  std::vector<uint32_t> iterated;
  for (const Value item : numbers) iterated.push_back(item.get<uint32_t>());
  EXPECT_THAT(iterated, ElementsAre(1u, 2u, 3u));

  // Random access first: builds the lazy string index before any iteration.
  const Value tokens = reader.get("tokenizer.ggml.tokens");
  EXPECT_EQ(tokens.element_type(), ValueType::kString);
  EXPECT_EQ(tokens[2].as_string(), "hello");
  EXPECT_EQ(tokens[1].as_string(), "");
  EXPECT_EQ(tokens[0].as_string(), "<s>");
  std::vector<std::string> strings;
  for (const Value item : tokens) strings.emplace_back(item.as_string());
  EXPECT_THAT(strings, ElementsAre("<s>", "", "hello"));

  const Value empty = reader.get("test.empty");
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_EQ(empty.begin(), empty.end());

  const Value nested = reader.get("test.nested");
  EXPECT_EQ(nested.element_type(), ValueType::kArray);
  ASSERT_EQ(nested.size(), 2u);
  EXPECT_EQ(nested[0][1].get<int8_t>(), -1);
  EXPECT_EQ(nested[1].size(), 0u);
  uint64_t inner_elements = 0;
  for (const Value inner : nested) inner_elements += inner.size();
  EXPECT_EQ(inner_elements, 2u);
}

TEST(GgufValid, ToOwnedCopiesDeeply) {
  const GgufBytes file = every_type_file();
  const Reader reader = Reader::from_memory(file.span(), kFileName);
  EXPECT_EQ(reader.get("test.i16").to_owned(), MetaValue(int16_t{-30000}));
  EXPECT_EQ(reader.get("test.bool").to_owned(), MetaValue(true));
  EXPECT_EQ(reader.get("test.string").to_owned(), MetaValue("hello, gguf"));
  EXPECT_EQ(reader.get("test.u32s").to_owned(), MetaValue(make_array(ValueType::kUint32, {uint32_t{1}, uint32_t{2}, uint32_t{3}})));
  EXPECT_EQ(reader.get("tokenizer.ggml.tokens").to_owned(), MetaValue(make_string_array({"<s>", "", "hello"})));
  EXPECT_EQ(
      reader.get("test.nested").to_owned(),
      MetaValue(make_array(ValueType::kArray, {make_array(ValueType::kInt8, {int8_t{1}, int8_t{-1}}), make_array(ValueType::kInt8, {})})));
  EXPECT_EQ(reader.get("test.empty").to_owned(), MetaValue(make_array(ValueType::kFloat32, {})));
}

TEST(GgufValid, TensorsReadBack) {
  const GgufBytes file = every_type_file();
  const Reader reader = Reader::from_memory(file.span(), kFileName);
  ASSERT_EQ(reader.tensors().size(), 2u);
  EXPECT_EQ(reader.data_section_offset() % 64, 0u);
  EXPECT_EQ(reader.data_section_size(), 192u + 256u);

  const archreg::gguf::TensorInfo* embd = reader.find_tensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->type, ggml::kQ8_0);
  EXPECT_EQ(embd->n_dims, 2u);
  EXPECT_THAT(embd->shape(), ElementsAre(64u, 2u));
  EXPECT_EQ(embd->ne[2], 1u);
  EXPECT_EQ(embd->n_elements, 128u);
  EXPECT_EQ(embd->row_bytes, 68u);
  EXPECT_EQ(embd->n_bytes, kQ8Bytes);
  EXPECT_EQ(embd->data_offset, reader.data_section_offset());
  const auto embd_data = reader.tensor_data(*embd);
  ASSERT_EQ(embd_data.size(), kQ8Bytes);
  EXPECT_EQ(embd_data.front(), std::byte{1});
  EXPECT_EQ(embd_data.back(), std::byte{static_cast<uint8_t>(kQ8Bytes)});

  const archreg::gguf::TensorInfo& norm = reader.tensors()[1];
  EXPECT_EQ(norm.name, "output_norm.weight");
  EXPECT_EQ(norm.offset, 192u);
  EXPECT_EQ(norm.data_offset, reader.data_section_offset() + 192);
  const auto norm_data = reader.tensor_data(norm);
  ASSERT_EQ(norm_data.size(), kNormBytes);
  EXPECT_EQ(norm_data.front(), std::byte{7});
  EXPECT_EQ(reader.find_tensor("output.weight"), nullptr);
}

TEST(GgufValid, TypeMismatchNamesBothTypes) {
  const GgufBytes file = every_type_file();
  const Reader reader = Reader::from_memory(file.span(), kFileName);
  const auto mismatch = [](const std::string& expected, const std::string& path) {
    return Rejected(WithMessage(HasSubstr(expected)), WithSubject(HasSubstr(path)));
  };
  EXPECT_THAT(error_from([&] { reader.get("test.i32").get<uint32_t>(); }), mismatch("expected type UINT32, found INT32", "test.i32"));
  EXPECT_THAT(error_from([&] { reader.get("test.u8").as_string(); }), mismatch("expected type STRING, found UINT8", "test.u8"));
  EXPECT_THAT(error_from([&] { reader.get("test.u32s")[1].get<int32_t>(); }),
              mismatch("expected type INT32, found UINT32", "test.u32s[1]"));
  EXPECT_THAT(error_from([&] { reader.get("test.u32").size(); }), Optional(_));
  EXPECT_THAT(error_from([&] { reader.get("test.u32").element_type(); }), Optional(_));
  EXPECT_THAT(error_from([&] { reader.get("test.u32s")[3]; }), Optional(_));
  EXPECT_THAT(error_from([&] { reader.get("test.big_u64").as_int(); }), Optional(_));
  EXPECT_THAT(error_from([&] { reader.get("test.string").as_number(); }), Optional(_));
  EXPECT_THAT(error_from([&] { reader.get("no.such.key"); }),
              Rejected(AnyOf(WithMessage(HasSubstr("no.such.key")), WithSubject(HasSubstr("no.such.key")))));
}

TEST(GgufValid, VersionTwoAccepted) {
  const GgufBytes file = every_type_file(2);
  const Reader reader = Reader::from_memory(file.span(), kFileName);
  EXPECT_EQ(reader.version(), 2u);
  EXPECT_EQ(reader.tensors().size(), 2u);
}

TEST(GgufValid, LongestTensorNameAccepted) {
  const std::string name(archreg::gguf::kMaxTensorNameLength, 'n');
  GgufBytes file;
  file.header(3, 1, 0).tensor_info(name, {8}, ggml::kF32, 0).align(32).data(32);
  const Reader reader = Reader::from_memory(file.span(), kFileName);
  ASSERT_EQ(reader.tensors().size(), 1u);
  EXPECT_EQ(reader.tensors()[0].name, name);
}

TEST(GgufValid, SmallAndLargeAlignments) {
  for (uint32_t alignment : {1u, 8u, 64u, 4096u}) {
    SCOPED_TRACE(alignment);
    // "a" holds 6 bytes, so "b" starts at 6 rounded up to the alignment.
    const uint64_t offset_b = (6 + alignment - 1) / alignment * alignment;
    GgufBytes file;
    file.header(3, 2, 1)
        .kv_u32("general.alignment", alignment)
        .tensor_info("a", {3}, ggml::kF16, 0)
        .tensor_info("b", {8}, ggml::kF32, offset_b)
        .align(alignment)
        .data(6)
        .align(alignment)
        .data(32);
    const Reader reader = Reader::from_memory(file.span(), kFileName);
    EXPECT_EQ(reader.alignment(), alignment);
    EXPECT_EQ(reader.data_section_offset() % alignment, 0u);
    EXPECT_EQ(reader.tensors()[1].data_offset % alignment, 0u);
    EXPECT_EQ(reader.tensor_data(reader.tensors()[1]).size(), 32u);
  }
}

TEST(GgufValid, NoTensorsNoMetadata) {
  GgufBytes file;
  file.header(3, 0, 0).align(32);
  const Reader reader = Reader::from_memory(file.span(), kFileName);
  EXPECT_EQ(reader.alignment(), archreg::gguf::kDefaultAlignment);
  EXPECT_TRUE(reader.metadata().empty());
  EXPECT_TRUE(reader.tensors().empty());
  EXPECT_EQ(reader.data_section_size(), 0u);
}

// --- Systematic damage to a valid file -----------------------------------------------------------

// A file cut short anywhere before its last tensor byte is an Error, never a crash.
TEST(GgufHostile, TruncatedAtEveryByte) {
  const GgufBytes file = every_type_file();
  const Reader whole = Reader::from_memory(file.span(), kFileName);
  const archreg::gguf::TensorInfo& last = whole.tensors().back();
  const uint64_t data_end = last.data_offset + last.n_bytes;
  for (uint64_t length = 0; length < data_end; ++length) {
    SCOPED_TRACE(length);
    EXPECT_THAT(read_error(file.prefix(length)), Optional(_));
  }
}

// Reads everything a file holds, so lazily decoded parts run too: every value deep-copied,
// every array's last element looked up (building the string index), every tensor's first and
// last byte. Returns how many values and bytes it touched.
uint64_t read_everything(const Reader& reader) {
  uint64_t touched = 0;
  for (const archreg::gguf::KeyValue& kv : reader.metadata()) {
    const Value value = reader.value(kv);
    static_cast<void>(value.to_owned());
    ++touched;
    if (value.is_array() && value.size() > 0) {
      static_cast<void>(value[value.size() - 1].bytes());
      ++touched;
    }
  }
  for (const archreg::gguf::TensorInfo& tensor : reader.tensors()) {
    const auto data = reader.tensor_data(tensor);
    if (!data.empty()) touched += std::to_integer<uint64_t>(data.front() | data.back()) > 0 ? 2 : 1;
  }
  return touched;
}

// Every byte of a valid file overwritten with values that make counts, lengths and type ids
// extreme: each result is either read completely or rejected with an Error.
TEST(GgufHostile, EveryByteOverwritten) {
  const GgufBytes file = every_type_file();
  for (uint8_t replacement : {uint8_t{0x00}, uint8_t{0x80}, uint8_t{0xFF}}) {
    for (uint64_t at = 0; at < file.size(); ++at) {
      std::vector<std::byte> damaged = file.bytes();
      damaged[at] = std::byte{replacement};
      const ExactCopy copy(damaged);
      // Rejection is the expected outcome for most positions; acceptance is fine too.
      static_cast<void>(error_from([&] { read_everything(Reader::from_memory(copy.span(), kFileName)); }));
    }
  }
}

// --- The fuzzer's committed seed corpus --------------------------------------------------------

// Files named ok_* must read completely; files named bad_* must be rejected.
TEST(GgufCorpus, EverySeedReadsOrIsRejected) {
  const std::filesystem::path corpus = std::filesystem::path(ARCHREG_SOURCE_DIR) / "tests/fuzz/corpus";
  ASSERT_TRUE(std::filesystem::is_directory(corpus)) << corpus;
  int seeds = 0;
  for (const auto& entry : std::filesystem::directory_iterator(corpus)) {
    const std::string name = entry.path().filename().string();
    SCOPED_TRACE(name);
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const ExactCopy copy(std::as_bytes(std::span(text.data(), text.size())));
    ++seeds;
    if (name.starts_with("ok_")) {
      EXPECT_NO_THROW(read_everything(Reader::from_memory(copy.span(), name)));
    } else {
      EXPECT_TRUE(name.starts_with("bad_")) << "seed names start with ok_ or bad_";
      EXPECT_THAT(read_error(copy.span()), Optional(_));
    }
  }
  EXPECT_GE(seeds, 10);
}

}  // namespace
