#pragma once
// The config schema: every key Tandem reads, once, with its type, default, allowed values
// and a one-line meaning. It is the single source of truth for
//   - the parser (runtime/config/config.cpp takes each key's range and choices from here,
//     and refuses, as a bug, to read a key that is not here),
//   - printConfig() (prints every key here, in this order, from a Config),
//   - README.md's key table (keyTableMarkdown(), printed by tandem_config_keys).
// tests/runtime/config_test.cpp checks that the parser reads every key here, and
// tests/runtime/readme_keys_test.cpp that README.md carries the generated table.
//
// Thread safety: configSchema() builds the table once (a function-local static) and is
// safe to call from any thread; the table is immutable afterwards.

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/config/config.h"

namespace tandem::config {

enum class KeyType {
  kBool,
  kInteger,
  kNumber,
  kString,
  kChoice,       // one of `choices`
  kCodec,        // a codec spec, checked against the codec registry
  kCodecList,    // a list of codec specs (a single spec is accepted too)
  kEndpoint,     // tcp://HOST:PORT | ipc://PATH | inproc://NAME
  kSplitPoint,   // an integer in range, or `auto`
  kIntegerList,  // a list of integers in range
  kEpochMap,     // a mapping epoch → integer in range, e.g. {0: 0, 3: 4}
  kOutageList,   // a list of [start_s, duration_s] pairs
};

// "integer", "codec spec", ...: the type column of the key table.
std::string typeName(KeyType type);

struct KeySpec {
  std::string path;  // "optimizer.lr"
  KeyType type = KeyType::kString;
  std::string description;  // one line, Markdown
  // Range of kInteger, kNumber and kSplitPoint values, and of the elements of kIntegerList
  // and the values of kEpochMap; absent: the limit of the C++ type.
  std::optional<double> min;
  std::optional<double> max;
  bool min_exclusive = false;        // kNumber: value > min rather than >= min
  std::vector<std::string> choices;  // kChoice: the accepted spellings
  // A string that may stay unset (empty): printConfig prints it as a comment then, since
  // an empty string is not a valid value in a file.
  bool optional = false;
  // The default in Markdown, when the value of Config{} does not tell it (it derives from
  // other keys, or the key is unset): "`runs/<run.name>`".
  std::string default_note;
  // The key's value in `config` as YAML (lists and mappings in flow style).
  std::function<std::string(const Config&)> value;

  std::string typeName() const { return config::typeName(type); }
  std::string allowed() const;      // "1 … 100000", "`sgd`, `adam`", ...
  std::string defaultText() const;  // default_note, or value(Config{})
};

// Every key, grouped by section in the order printConfig() prints them.
const std::vector<KeySpec>& configSchema();

// The key at `path`, or nullptr.
const KeySpec* findKey(std::string_view path);

// README.md's key table: a Markdown table with a header row and one row per key.
std::string keyTableMarkdown();

// The markers around the generated table in README.md.
inline constexpr std::string_view kKeyTableBegin = "<!-- config-keys:begin -->";
inline constexpr std::string_view kKeyTableEnd = "<!-- config-keys:end -->";

// `readme` with the text between the markers replaced by keyTableMarkdown(). Throws
// tandem::Error when a marker is missing or they are out of order.
std::string replaceKeyTable(const std::string& readme);

// Every key path the parser looks up while parsing a config (for the test that the parser
// and the schema agree).
std::vector<std::string> keysReadByParser();

// A YAML scalar for `text`: plain when that is unambiguous, double-quoted otherwise.
std::string yamlQuote(const std::string& text);

}  // namespace tandem::config
