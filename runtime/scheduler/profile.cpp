#include "runtime/scheduler/profile.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "runtime/common/error.h"

namespace tandem::scheduler {

std::int64_t ModelProfile::activationBytes(int boundary) const {
  TANDEM_ENFORCE(boundary >= 0 && static_cast<std::size_t>(boundary) < boundary_shapes.size(), "boundary ", boundary,
                 " of a profile with ", boundary_shapes.size(), " boundaries");
  std::int64_t numel = batch_size;
  for (auto d : boundary_shapes[static_cast<std::size_t>(boundary)]) numel *= d;
  return numel * 4;
}

std::string toJson(const SideProfile& side) {
  const nlohmann::json out = {{"host", side.host},
                              {"batch_size", side.batch_size},
                              {"forward_seconds", side.forward_seconds},
                              {"backward_seconds", side.backward_seconds},
                              {"codec_seconds_per_byte", side.codec_seconds_per_byte}};
  return out.dump();
}

namespace {

const nlohmann::json& field(const nlohmann::json& object, const char* key) {
  const auto it = object.find(key);
  if (it == object.end()) throw Error(detail::concat("stage profile: missing field \"", key, "\""));
  return *it;
}

std::vector<double> secondsArray(const nlohmann::json& object, const char* key) {
  const auto& value = field(object, key);
  if (!value.is_array()) {
    throw Error(detail::concat("stage profile: \"", key, "\" must be an array of seconds, got ", value.type_name()));
  }
  std::vector<double> out;
  out.reserve(value.size());
  for (std::size_t i = 0; i < value.size(); ++i) {
    const auto& v = value[i];
    if (!v.is_number()) {
      throw Error(detail::concat("stage profile: \"", key, "\"[", i, "] must be a number, got ", v.type_name()));
    }
    const double s = v.get<double>();
    if (!std::isfinite(s) || s < 0) {
      throw Error(
          detail::concat("stage profile: \"", key, "\"[", i, "] = ", s, " is not a time (finite and >= 0 seconds)"));
    }
    out.push_back(s);
  }
  return out;
}

}  // namespace

SideProfile sideFromJson(const std::string& text) {
  nlohmann::json in;
  try {
    in = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // syntax, or a number out of range
    throw Error(detail::concat("stage profile: not JSON (", e.what(), ")"));
  }
  if (!in.is_object()) throw Error(detail::concat("stage profile: expected a JSON object, got ", in.type_name()));

  SideProfile side;
  const auto& host = field(in, "host");
  if (!host.is_string())
    throw Error(detail::concat("stage profile: \"host\" must be a string, got ", host.type_name()));
  side.host = host.get<std::string>();

  const auto& batch = field(in, "batch_size");
  if (!batch.is_number_integer() || batch.get<std::int64_t>() <= 0) {
    throw Error(detail::concat("stage profile: \"batch_size\" must be a positive integer, got ", batch.dump()));
  }
  side.batch_size = batch.get<std::int64_t>();

  side.forward_seconds = secondsArray(in, "forward_seconds");
  side.backward_seconds = secondsArray(in, "backward_seconds");
  if (side.forward_seconds.size() != side.backward_seconds.size()) {
    throw Error(detail::concat("stage profile: ", side.forward_seconds.size(), " forward times but ",
                               side.backward_seconds.size(), " backward times (one of each per stage)"));
  }
  if (const auto it = in.find("codec_seconds_per_byte"); it != in.end()) {
    if (!it->is_object()) {
      throw Error(detail::concat("stage profile: \"codec_seconds_per_byte\" must be an object, got ", it->type_name()));
    }
    for (const auto& [codec, value] : it->items()) {
      if (!value.is_number() || !std::isfinite(value.get<double>()) || value.get<double>() < 0) {
        throw Error(detail::concat("stage profile: codec_seconds_per_byte[\"", codec, "\"] = ", value.dump(),
                                   " is not a cost (finite and >= 0 seconds per byte)"));
      }
      side.codec_seconds_per_byte[codec] = value.get<double>();
    }
  }
  return side;
}

}  // namespace tandem::scheduler
