#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "gguf/reader.hpp"
#include "gguf/writer.hpp"
#include "test_support.hpp"

namespace archreg::gguf {
namespace {

using ::testing::HasSubstr;

std::vector<std::byte> pattern_bytes(size_t n, uint8_t seed) {
  std::vector<std::byte> bytes(n);
  for (size_t i = 0; i < n; ++i) bytes[i] = std::byte(static_cast<uint8_t>(seed + i * 31));
  return bytes;
}

TEST(Writer, RoundTripsEveryValueTypeAndStreamsDataInAnyChunking) {
  testing::TempDir dir;
  const auto path = dir / "all.gguf";
  const uint64_t shape_a[] = {64, 3};
  const uint64_t shape_b[] = {256, 2, 2};
  const auto data_a = pattern_bytes(64 * 3 * 4, 1);
  const auto data_b = pattern_bytes(144 * 2 * 2, 7);
  {
    Writer writer(path);
    writer.add("general.alignment", uint32_t{64});
    writer.add("u8", uint8_t{200});
    writer.add("i8", int8_t{-100});
    writer.add("u16", uint16_t{60000});
    writer.add("i16", int16_t{-30000});
    writer.add("u32", uint32_t{4000000000u});
    writer.add("i32", int32_t{-2000000000});
    writer.add("f32", 1.5f);
    writer.add("bool", true);
    writer.add("string", "héllo");
    writer.add("u64", uint64_t{1} << 63);
    writer.add("i64", int64_t{-1} << 62);
    writer.add("f64", 0.1);
    writer.add("strings", make_string_array({"a", "", "ccc"}));
    writer.add("nested",
               make_array(ValueType::kArray, {make_array(ValueType::kInt32, {int32_t{1}, int32_t{2}}), make_array(ValueType::kInt32, {})}));
    writer.add_tensor("a", 0, shape_a);
    writer.add_tensor("b", 12, shape_b);  // Q4_K
    // Chunks that straddle the tensor boundary.
    std::vector<std::byte> all(data_a);
    all.insert(all.end(), data_b.begin(), data_b.end());
    for (size_t at = 0; at < all.size(); at += 100) writer.write(std::span(all).subspan(at, std::min<size_t>(100, all.size() - at)));
    writer.commit();
  }
  EXPECT_EQ(dir.entries(), 1u);  // no temporary file left beside it
  const Reader reader = Reader::open(path);
  EXPECT_EQ(reader.alignment(), 64u);
  EXPECT_EQ(reader.data_section_offset() % 64, 0u);
  EXPECT_EQ(reader.get("u8").get<uint8_t>(), 200);
  EXPECT_EQ(reader.get("i8").get<int8_t>(), -100);
  EXPECT_EQ(reader.get("u16").get<uint16_t>(), 60000);
  EXPECT_EQ(reader.get("i16").get<int16_t>(), -30000);
  EXPECT_EQ(reader.get("u32").get<uint32_t>(), 4000000000u);
  EXPECT_EQ(reader.get("i32").get<int32_t>(), -2000000000);
  EXPECT_EQ(reader.get("f32").get<float>(), 1.5f);
  EXPECT_TRUE(reader.get("bool").get<bool>());
  EXPECT_EQ(reader.get("string").as_string(), "héllo");
  EXPECT_EQ(reader.get("u64").get<uint64_t>(), uint64_t{1} << 63);
  EXPECT_EQ(reader.get("i64").get<int64_t>(), int64_t{-1} << 62);
  EXPECT_EQ(reader.get("f64").get<double>(), 0.1);
  const Value strings = reader.get("strings");
  ASSERT_EQ(strings.size(), 3u);
  EXPECT_EQ(strings[2].as_string(), "ccc");
  EXPECT_EQ(strings[1].as_string(), "");
  const Value nested = reader.get("nested");
  EXPECT_EQ(nested[0][1].get<int32_t>(), 2);
  EXPECT_EQ(nested[1].size(), 0u);
  EXPECT_EQ(nested.to_owned(), MetaValue(make_array(ValueType::kArray, {make_array(ValueType::kInt32, {int32_t{1}, int32_t{2}}),
                                                                        make_array(ValueType::kInt32, {})})));
  ASSERT_EQ(reader.tensors().size(), 2u);
  const auto a = reader.tensor_data(*reader.find_tensor("a"));
  const auto b = reader.tensor_data(*reader.find_tensor("b"));
  EXPECT_TRUE(std::equal(a.begin(), a.end(), data_a.begin(), data_a.end()));
  EXPECT_TRUE(std::equal(b.begin(), b.end(), data_b.begin(), data_b.end()));
  EXPECT_EQ(reader.find_tensor("b")->row_bytes, 144u);
}

TEST(Writer, RawEntriesCopyVerbatim) {
  testing::TempDir dir;
  {
    Writer writer(dir / "src.gguf");
    writer.add("tokens", make_string_array({"x", "yy"}));
    writer.add("general.alignment", uint32_t{16});
    writer.commit();
  }
  const Reader source = Reader::open(dir / "src.gguf");
  {
    Writer writer(dir / "copy.gguf");
    for (const KeyValue& kv : source.metadata()) writer.add_raw(kv.key, source.raw_entry(kv));
    EXPECT_EQ(writer.alignment(), 16u);
    writer.commit();
  }
  const Reader copy = Reader::open(dir / "copy.gguf");
  EXPECT_EQ(copy.get("tokens")[1].as_string(), "yy");
  EXPECT_EQ(copy.alignment(), 16u);
}

TEST(Writer, RefusesInvalidDeclarations) {
  testing::TempDir dir;
  Writer writer(dir / "x.gguf");
  const uint64_t bad_block[] = {100, 2};
  const uint64_t zero[] = {32, 0};
  const uint64_t ok[] = {32};
  EXPECT_THROW(writer.add("general.alignment", int32_t{32}), Error);
  EXPECT_THROW(writer.add("general.alignment", uint32_t{48}), Error);
  EXPECT_THROW(writer.add("", uint32_t{1}), Error);
  writer.add("k", uint32_t{1});
  EXPECT_THROW(writer.add("k", uint32_t{2}), Error);
  EXPECT_THROW(writer.add("mixed", make_array(ValueType::kInt32, {int32_t{1}, uint32_t{2}})), Error);
  EXPECT_THROW(writer.add_tensor("q", 2, bad_block), Error);
  EXPECT_THROW(writer.add_tensor("z", 0, zero), Error);
  EXPECT_THROW(writer.add_tensor("r", 4, ok), Error);  // removed type
  EXPECT_THROW(writer.add_tensor(std::string(64, 'n'), 0, ok), Error);
  writer.add_tensor("t", 0, ok);
  EXPECT_THROW(writer.add_tensor("t", 0, ok), Error);
}

TEST(Writer, NeverLeavesAPartialFile) {
  testing::TempDir dir;
  const auto path = dir / "partial.gguf";
  const uint64_t shape[] = {32, 4};
  {
    Writer writer(path);
    writer.add_tensor("t", 0, shape);
    writer.write(pattern_bytes(100, 0));
    try {
      writer.commit();
      FAIL() << "commit with missing data must fail";
    } catch (const Error& error) {
      EXPECT_THAT(error.what(), HasSubstr("only 100 of its 512 bytes"));
    }
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_EQ(dir.entries(), 0u);
  {
    Writer abandoned(path);
    abandoned.add("k", uint32_t{1});
  }
  EXPECT_EQ(dir.entries(), 0u);
}

TEST(Writer, DoesNotOverwriteUnlessAsked) {
  testing::TempDir dir;
  const auto path = dir / "exists.gguf";
  std::ofstream(path) << "precious";
  try {
    Writer writer(path);
    FAIL() << "must refuse an existing destination";
  } catch (const Error& error) {
    EXPECT_THAT(error.what(), HasSubstr("already exists"));
  }
  {
    Writer writer(path, WriterOptions{.overwrite = true});
    writer.add("k", uint32_t{1});
    writer.commit();
  }
  EXPECT_EQ(Reader::open(path).get("k").get<uint32_t>(), 1u);
}

}  // namespace
}  // namespace archreg::gguf
