#include "compression/registry.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <mutex>

#include "compression/codecs/affine_quant.h"
#include "compression/codecs/channel_quant.h"
#include "compression/codecs/half.h"
#include "compression/codecs/lossless.h"
#include "compression/codecs/none.h"
#include "compression/codecs/topk.h"

namespace tandem::compression {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, CodecFactory> factories;  // sorted, so codecNames() is too
  std::vector<std::string> builtins;              // in registration order
  bool builtins_registered = false;
};

Registry& registry() {
  static Registry instance;
  return instance;
}

void addLocked(Registry& r, const std::string& name, CodecFactory factory) {
  if (name.empty() || name.find_first_of(":+ \t\r\n") != std::string::npos) {
    throw CodecError("bad codec name '" + name + "': it must be non-empty without ':', '+' or whitespace");
  }
  if (!factory) throw CodecError("codec '" + name + "' registered without a factory");
  if (!r.factories.emplace(name, std::move(factory)).second) {
    throw CodecError("codec '" + name + "' is already registered");
  }
}

// For codecs without parameters: "int8:3" is a mistake, not an int8.
CodecFactory withoutArgument(const std::string& name, std::unique_ptr<Codec> (*make)()) {
  return [name, make](const std::string& argument) {
    if (!argument.empty()) throw CodecError("codec '" + name + "' takes no argument, got '" + name + ":" + argument + "'");
    return make();
  };
}

CodecFactory withoutArgument(const std::string& name, std::unique_ptr<Codec> (*make)(int), int bits) {
  return [name, make, bits](const std::string& argument) {
    if (!argument.empty()) throw CodecError("codec '" + name + "' takes no argument, got '" + name + ":" + argument + "'");
    return make(bits);
  };
}

std::size_t editDistance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (const std::string& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// "; did you mean 'int8'?" for the closest known name within a small edit distance.
std::string didYouMean(const std::string& name, const std::vector<std::string>& known) {
  const std::string* best = nullptr;
  std::size_t best_distance = std::max<std::size_t>(2, name.size() / 3) + 1;
  for (const std::string& k : known) {
    const std::size_t d = editDistance(name, k);
    if (d < best_distance) {
      best_distance = d;
      best = &k;
    }
  }
  return best ? "; did you mean '" + *best + "'?" : "";
}

}  // namespace

void registerCodec(const std::string& name, CodecFactory factory) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  addLocked(r, name, std::move(factory));
}

void registerBuiltinCodecs() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (r.builtins_registered) return;
  const auto add = [&r](const std::string& name, CodecFactory factory) {
    addLocked(r, name, std::move(factory));
    r.builtins.push_back(name);
  };
  add("none", withoutArgument("none", &makeNoneCodec));
  add("fp16", withoutArgument("fp16", &makeFp16Codec));
  add("bf16", withoutArgument("bf16", &makeBf16Codec));
  for (int bits : {8, 4, 2}) {
    const std::string name = "int" + std::to_string(bits);
    add(name, withoutArgument(name, &makeAffineQuantCodec, bits));
    add(name + "_channel", withoutArgument(name + "_channel", &makeChannelQuantCodec, bits));
  }
  add("topk", [](const std::string& argument) { return makeTopkCodec(parseTopkRatio(argument)); });
  r.builtins_registered = true;
}

std::unique_ptr<Codec> makeCodec(const std::string& spec) {
  registerBuiltinCodecs();
  if (spec.empty()) throw CodecError("empty codec spec; known codecs: " + joined(codecNames()));
  if (std::any_of(spec.begin(), spec.end(), [](unsigned char c) { return std::isspace(c) != 0; })) {
    throw CodecError("codec spec '" + spec + "' contains whitespace");
  }

  const std::size_t plus = spec.find('+');
  const std::string base = spec.substr(0, plus);
  const std::string stage = plus == std::string::npos ? std::string() : spec.substr(plus + 1);
  if (plus != std::string::npos && stage.find('+') != std::string::npos) {
    throw CodecError("codec spec '" + spec + "' has more than one lossless stage; at most one of " +
                     joined(losslessStageNames()) + " may follow the codec");
  }

  const std::size_t colon = base.find(':');
  const std::string name = base.substr(0, colon);
  const std::string argument = colon == std::string::npos ? std::string() : base.substr(colon + 1);
  if (colon != std::string::npos && argument.empty()) {
    throw CodecError("codec spec '" + spec + "' has an empty argument after '" + name + ":'");
  }

  CodecFactory factory;
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    const auto it = r.factories.find(name);
    if (it != r.factories.end()) factory = it->second;
  }
  if (!factory) {
    const std::vector<std::string> known = codecNames();
    const auto& stages = losslessStageNames();
    if (std::find(stages.begin(), stages.end(), name) != stages.end()) {
      throw CodecError("codec spec '" + spec + "': '" + name + "' is a lossless stage; write it after a codec, e.g. 'int8+" +
                       name + "'");
    }
    throw CodecError("unknown codec '" + name + "' in spec '" + spec + "'; known codecs: " + joined(known) +
                     didYouMean(name, known));
  }
  std::unique_ptr<Codec> codec = factory(argument);
  if (!codec) throw CodecError("the factory of codec '" + name + "' returned no codec");
  if (plus == std::string::npos) return codec;

  const auto& stages = losslessStageNames();
  if (std::find(stages.begin(), stages.end(), stage) == stages.end()) {
    throw CodecError("unknown lossless stage '" + stage + "' in spec '" + spec + "'; known stages: " + joined(stages) +
                     didYouMean(stage, stages));
  }
  return makeLosslessStage(stage, std::move(codec));
}

std::vector<std::string> codecNames() {
  registerBuiltinCodecs();
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<std::string> names;
  names.reserve(r.factories.size());
  for (const auto& entry : r.factories) names.push_back(entry.first);
  return names;
}

std::vector<std::string> builtinCodecNames() {
  registerBuiltinCodecs();
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<std::string> names = r.builtins;
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace tandem::compression
