#pragma once
// Spelling tables for the config's enums. Each enum E used in the config specialises
// EnumNames<E> with kValues, its values and their YAML/CLI/JSON spellings; toString,
// parseEnum and enumNames then work for it. The spellings are contracts (config files,
// summaries, metrics labels): extend, don't rename.

#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace tandem::config {

template <typename E>
struct EnumNames;  // specialised next to each enum: static constexpr std::pair<E, const char*> kValues[]

template <typename E, typename = void>
struct IsConfigEnum : std::false_type {};
template <typename E>
struct IsConfigEnum<E, std::void_t<decltype(EnumNames<E>::kValues)>> : std::true_type {};

// The spelling of `value` ("edge", "recompute", ...).
template <typename E, typename = std::enable_if_t<IsConfigEnum<E>::value>>
const char* toString(E value) {
  for (const auto& [v, name] : EnumNames<E>::kValues) {
    if (v == value) return name;
  }
  return "?";  // unreachable for a value of the enum: every enumerator has a spelling
}

// The value spelled `text`, if any (exact match: spellings are lower case).
template <typename E>
std::optional<E> parseEnum(std::string_view text) {
  for (const auto& [v, name] : EnumNames<E>::kValues) {
    if (text == name) return v;
  }
  return std::nullopt;
}

// Every spelling, in declaration order.
template <typename E>
std::vector<std::string> enumNames() {
  std::vector<std::string> names;
  for (const auto& entry : EnumNames<E>::kValues) names.emplace_back(entry.second);
  return names;
}

}  // namespace tandem::config
