#include "gguf/value.hpp"

namespace archreg::gguf {

bool MetaArray::operator==(const MetaArray& other) const {
  return element_type == other.element_type && items == other.items;
}

MetaArray make_array(ValueType element_type, std::vector<MetaValue> items) {
  return MetaArray{element_type, std::move(items)};
}

MetaArray make_string_array(const std::vector<std::string>& items) {
  MetaArray array{ValueType::kString, {}};
  array.items.reserve(items.size());
  for (const std::string& item : items) array.items.emplace_back(item);
  return array;
}

}  // namespace archreg::gguf
